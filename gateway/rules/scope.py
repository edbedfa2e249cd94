"""What rule templates see of an event: `payload`, `event`, `headers`, `now` and `periods`.

One scope for every reader of templates: the planner, the runs and the dry run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.errors import MalformedPayload
from gateway.nesting import READABLE_DEPTH, check_depth
from gateway.rules import templates
from gateway.rules.model import Rule
from gateway.rules.periods import periods as calendar_periods
from gateway.store import Event

# What templates see of `event`: everything but its headers and body (`headers`, `payload`).
TEMPLATE_EVENT_FIELDS = (
    "id", "source", "provider", "type", "delivery_id", "status", "received_at", "received_via",
)  # fmt: skip


def reads_payload(rule: Rule) -> bool:
    """Whether a run of `rule` may read its event's payload: an assistant's always; actions
    only if one of their templates names `payload` (parsing the body was most of the cost of
    a run that does not: bench/sustain)."""
    if rule.kind != "actions":
        return True
    return any(
        templates.reads(action.arguments, "payload") or templates.reads(action.when, "payload")
        for action in rule.actions
    )


def scope_for(event: Event, now: datetime | None = None, *, parse: bool = True) -> dict[str, Any]:
    """What templates see: `payload`, `event`, `headers`, `now`. With `parse=False` (no
    template reads it: `reads_payload`), `payload` is None, unless the event is a schedule's,
    whose `event.fired_at` and `periods` come from its payload."""
    if not parse and event.source != "schedule":
        return _scope(event, None, now)
    try:
        payload = orjson.loads(event.body)
    except orjson.JSONDecodeError:
        payload = event.body.decode("utf-8", "replace")
    else:
        try:
            # Ingest's check, with its bracket count first: the walk cost more than the parse.
            check_depth(payload, READABLE_DEPTH, event.body)
        except MalformedPayload:
            # Stored before max_json_depth existed: text, as a body that is not JSON, rather
            # than a structure `tojson` and the journal would recurse into and fail on.
            payload = event.body.decode("utf-8", "replace")
    if event.fetched is not None and isinstance(payload, dict):
        payload = with_fetched(payload, event.fetched)
    return _scope(event, payload, now)


def _scope(event: Event, payload: Any, now: datetime | None) -> dict[str, Any]:
    info: dict[str, Any] = {key: getattr(event, key) for key in TEMPLATE_EVENT_FIELDS}
    # `periods.last_week.start_date` and the like: around the fire time, in the rule's zone,
    # for a scheduled event; around the arrival, in UTC, for any other.
    anchor, zone = event.received_at, "UTC"
    if event.source == "schedule" and isinstance(payload, dict):
        fired = payload.get("fired_at")
        info["fired_at"] = datetime.fromisoformat(fired) if isinstance(fired, str) else None
        info["manual"] = bool(payload.get("manual"))
        anchor = info["fired_at"] or anchor
        zone = str(payload.get("timezone") or zone)
    return {
        "payload": payload,
        "event": info,
        "headers": event.headers,
        "now": now or datetime.now(UTC),
        "periods": LazyPeriods(anchor, zone),
    }


def with_fetched(payload: dict[str, Any], fetched: Any) -> dict[str, Any]:
    """A thin event's payload as rules see it: the fetched object at `payload.object`.

    It takes the place of a delivered top-level `object` (Stripe sends the constant
    "v2.core.event" there), which rules then do not see; the stored body keeps it.
    """
    return {**payload, "object": fetched}


class LazyPeriods(Mapping[str, Any]):
    """`periods` for templates, computed on first use: most rules never look at it."""

    def __init__(self, anchor: datetime, zone: str) -> None:
        self._anchor, self._zone = anchor, zone
        self._computed: dict[str, Any] | None = None

    def _all(self) -> dict[str, Any]:
        if self._computed is None:
            self._computed = _periods(self._anchor, self._zone)
        return self._computed

    def __getitem__(self, key: str) -> Any:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _periods(anchor: datetime, zone: str) -> dict[str, dict[str, str]]:
    try:
        return calendar_periods(anchor, zone)
    except (ValueError, KeyError):  # a zone unknown here (checked at load): fall back to UTC
        return calendar_periods(anchor, "UTC")
