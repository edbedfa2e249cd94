"""Which stored events an eval replays: `--last`, `--since`, `--rule`, and their bound."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.store import Event, Store

# Most events one eval replays (`--last`): a bound on the model calls it may make.
MAX_EVENTS = 1000


@dataclass(frozen=True)
class Selection:
    """Which stored events to replay: the newest `last`, received since `since`, and (with
    `rule`) only those the live rule `rule` ran for."""

    last: int = 50
    since: datetime | None = None
    rule: str | None = None
    # Read-only tools answer from the live journal (gateway/evaluation/offline.py).
    offline: bool = False


async def select_events(store: Store, selection: Selection) -> list[Event]:
    """The live events to replay, oldest first."""
    if not 0 < selection.last <= MAX_EVENTS:
        raise ValueError(f"--last must be between 1 and {MAX_EVENTS}")
    if selection.rule is None:
        events = await store.events.find(limit=selection.last, since=selection.since)
    else:
        runs = await store.runs.find(rule=selection.rule, since=selection.since, limit=MAX_EVENTS)
        ids = sorted({run.event_id for run in runs}, reverse=True)[: selection.last]
        events = await store.events.by_ids(ids)
    return sorted(events, key=lambda event: event.id)
