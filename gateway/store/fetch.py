"""The record of a thin event's fetch (`gateway.store.fetches`), as the store hands it out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.store.records import utc


@dataclass(frozen=True, slots=True)
class Fetch:
    """A thin event's fetch: its tries so far, the next one, and the last error."""

    event_id: int
    attempts: int
    next_attempt_at: datetime | None
    retry_since: datetime | None
    error: str | None
    fetched_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Fetch:
        return cls(
            event_id=row.event_id,
            attempts=row.attempts,
            next_attempt_at=utc(row.next_attempt_at),
            retry_since=utc(row.retry_since),
            error=row.error,
            fetched_at=utc(row.fetched_at),
        )
