"""A batch of new events as rows of `events`, and what each one became: stored or a duplicate.

Both ingest writers take their columns and values from here, so the table is their one list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from operator import attrgetter

import orjson
from sqlalchemy import JSON, DateTime

from gateway.store.records import NewEvent, Stored
from gateway.store.schema import NEW_EVENT_COLUMNS, NEW_EVENT_FIELDS, events

COLUMNS = NEW_EVENT_COLUMNS
Key = tuple[str, str]
"""(source, dedup_key): what the events table is unique on."""
Found = tuple[int, str]
"""An event already stored: its id and the delivery id it came with."""

_VALUES = attrgetter(*NEW_EVENT_FIELDS)
_JSON = [i for i, name in enumerate(COLUMNS) if isinstance(events.c[name].type, JSON)]
_TIMES = [i for i, name in enumerate(COLUMNS) if isinstance(events.c[name].type, DateTime)]


def rows(batch: Sequence[NewEvent], time: Callable[[datetime], object]) -> list[list[object]]:
    """The values of each event in `COLUMNS` order: JSON as text, instants as `time` gives."""
    encoded = []
    for new in batch:
        row = list(_VALUES(new))
        for i in _JSON:
            row[i] = orjson.dumps(row[i]).decode()
        for i in _TIMES:
            row[i] = time(row[i])
        encoded.append(row)
    return encoded


def missing(batch: Sequence[NewEvent], inserted: dict[Key, Found]) -> list[Key]:
    """The keys of a batch that its insert skipped: stored already, to be looked up (sorted)."""
    return sorted({(new.source, new.dedup_key) for new in batch} - inserted.keys())


def outcomes(
    batch: Sequence[NewEvent], inserted: dict[Key, Found], existing: dict[Key, Found]
) -> list[Stored]:
    """Each event of a batch as stored or as a duplicate of what was there (or came first)."""
    results = []
    for new in batch:
        key = (new.source, new.dedup_key)
        if key in inserted:
            # The first of several equal deliveries in one batch is the stored one.
            existing[key] = inserted.pop(key)
            results.append(Stored(existing[key][0], new, duplicate=False))
        else:
            event_id, delivery_id = existing[key]
            results.append(Stored(event_id, new, duplicate=True, stored_delivery_id=delivery_id))
    return results
