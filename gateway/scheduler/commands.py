"""What `gateway schedules` and `gateway fire RULE` do, as functions the CLI calls.

They take an open `Store`; printing and argument parsing stay in `gateway.cli`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from gateway.rules.model import Rule
from gateway.scheduler.service import fire_now
from gateway.scheduler.timing import Timing
from gateway.store import Store, Stored


async def list_schedules(
    store: Store, rules: Iterable[Rule], now: datetime, *, count: int = 5
) -> list[dict[str, Any]]:
    """Every enabled scheduled rule: its schedule, next `count` fire times, last firing."""
    scheduled = [r for r in rules if r.enabled and r.schedule is not None]
    known = await store.schedules.load([r.name for r in scheduled])
    listing = []
    for rule in scheduled:
        assert rule.schedule is not None
        timing = Timing.of(rule)
        row = known.get(rule.name)
        listing.append(
            {
                "rule": rule.name,
                "cron": rule.schedule.cron,
                "every": rule.schedule.every,
                "timezone": rule.schedule.timezone,
                "catch_up": rule.schedule.catch_up,
                "jitter": rule.schedule.jitter,
                "misfire_grace": rule.schedule.misfire_grace,
                "next": [
                    {"local": at.astimezone(timing.zone).isoformat(), "utc": at.isoformat()}
                    for at in timing.upcoming(now.astimezone(UTC), count)
                ],
                "last_fire_at": _iso(row.last_fire_at if row else None),
                "last_event_id": row.last_event_id if row else None,
                "last_result": row.last_result if row else None,
            }
        )
    return listing


async def fire(store: Store, rule: Rule) -> Stored:
    """Fire `rule` now, outside its schedule: a new event with a fresh delivery id, manual."""
    return (await fire_now(store, rule)).stored


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
