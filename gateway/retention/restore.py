"""`gateway archive restore`: archived events (and their runs) brought back for replay.

Events whose row is still there get their body and headers back; events pruned whole, and
runs with their steps, come back under their own ids. Then `gateway replay EVENT` works.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.retention.archive import Archive
from gateway.store import Store


@dataclass
class Restored:
    events: int = 0
    runs: int = 0
    steps: int = 0


def _within(stamp: str | None, since: datetime, until: datetime) -> bool:
    if stamp is None:
        return False
    at = datetime.fromisoformat(stamp).astimezone(UTC)
    return since <= at < until


async def restore(
    store: Store, archive: Archive, since: datetime, until: datetime, *, runs: bool = True
) -> Restored:
    """Bring back what the archive holds received (events) or created (runs) in
    [`since`, `until`)."""
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    done = Restored()
    last_day = until.date().isoformat()
    for name in await archive.names("events"):
        if name.split("/")[1] > last_day:
            continue
        rows = [r for r in await archive.read(name) if _within(r["received_at"], since, until)]
        if rows:
            done.events += await store.retention.restore("events", rows)
    if not runs:
        return done
    for name in await archive.names("runs"):
        if name.split("/")[1] > last_day:
            continue
        records = [
            r for r in await archive.read(name) if _within(r["run"]["created_at"], since, until)
        ]
        if not records:
            continue
        done.runs += await store.retention.restore("runs", [r["run"] for r in records])
        steps = [s for r in records for s in r["steps"]]
        if steps:
            done.steps += await store.retention.restore("steps", steps)
    return done
