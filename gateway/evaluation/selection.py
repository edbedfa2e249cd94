"""Which stored events an eval replays: `--last`, `--since`, `--rule`, `--events`, and their
bounds."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.store import Event, Store

# Most events one eval replays (`--last`): a bound on the model calls it may make.
MAX_EVENTS = 1000
# Most stored events read to find those whose payload matches `--events payload.FIELD=...`
# (newest first): a bound on the work of a query that matches little.
MAX_SCANNED = 10_000
PAGE = 500


@dataclass(frozen=True)
class Selection:
    """Which stored events to replay: the newest `last` that match the filters (received
    since `since`, before `until`, of `source`, `type`, in `status`, whose payload has each
    `payload` field equal to its value), and (with `rule`) only those the live rule ran for."""

    last: int = 50
    since: datetime | None = None
    rule: str | None = None
    # Read-only tools answer from the live journal (gateway/evaluation/offline.py).
    offline: bool = False
    until: datetime | None = None
    source: str | None = None
    type: str | None = None
    status: str | None = None
    payload: dict[str, str] = field(default_factory=dict)

    def matches(self, event: Event) -> bool:
        """Whether `event` passes every filter (the store applies them too, but not to the
        events a rule's runs name, nor the payload)."""
        found = (
            (self.source is None or event.source == self.source)
            and (self.type is None or event.type == self.type)
            and (self.status is None or event.status == self.status)
            and (self.since is None or event.received_at >= self.since)
            and (self.until is None or event.received_at < self.until)
        )
        return found and all(_field_is(event, k, v) for k, v in self.payload.items())


async def select_events(store: Store, selection: Selection) -> list[Event]:
    """The live events to replay, oldest first."""
    if not 0 < selection.last <= MAX_EVENTS:
        raise ValueError(f"--last must be between 1 and {MAX_EVENTS}")
    if selection.rule is not None:
        runs = await store.runs.find(rule=selection.rule, since=selection.since, limit=MAX_EVENTS)
        ids = sorted({run.event_id for run in runs}, reverse=True)
        candidates = await store.events.by_ids(ids)
        events = sorted(candidates, key=lambda event: -event.id)
        chosen = [event for event in events if selection.matches(event)][: selection.last]
    else:
        chosen = await _newest(store, selection)
    return sorted(chosen, key=lambda event: event.id)


async def _newest(store: Store, selection: Selection) -> list[Event]:
    """The newest `last` matching events, reading at most MAX_SCANNED when the payload is
    matched here."""
    filters: dict[str, Any] = {
        "source": selection.source,
        "type": selection.type,
        "status": selection.status,
        "since": selection.since,
        "until": selection.until,
    }
    if not selection.payload:
        return await store.events.find(limit=selection.last, **filters)
    chosen: list[Event] = []
    before: int | None = None
    scanned = 0
    while scanned < MAX_SCANNED and len(chosen) < selection.last:
        page = await store.events.find(
            limit=min(PAGE, MAX_SCANNED - scanned), before=before, **filters
        )
        chosen += [event for event in page if selection.matches(event)]
        scanned += len(page)
        if len(page) < PAGE:
            break
        before = page[-1].id
    return chosen[: selection.last]


def _field_is(event: Event, path: str, wanted: str) -> bool:
    """Whether the payload's field at dotted `path` is `wanted`: a string equal to it, or
    any other JSON value whose JSON text is (`5`, `true`, `null`)."""
    try:
        value: Any = json.loads(event.body)
    except ValueError:
        return False
    for name in path.split("."):
        if isinstance(value, dict) and name in value:
            value = value[name]
        elif isinstance(value, list) and name.isdigit() and int(name) < len(value):
            value = value[int(name)]
        else:
            return False
    if isinstance(value, str):
        return value == wanted
    return json.dumps(value) == wanted
