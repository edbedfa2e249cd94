"""The records the store hands in and out: plain frozen dataclasses, no ORM sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A verified delivery, about to be stored."""

    source: str
    provider: str
    type: str
    delivery_id: str
    headers: dict[str, str]
    body: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Stored:
    """The outcome of storing a `NewEvent`: its id, and whether it was a redelivery."""

    id: int
    event: NewEvent
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    source: str
    provider: str
    type: str
    delivery_id: str
    received_at: datetime
    headers: dict[str, str]
    body: bytes
    status: str

    @classmethod
    def from_row(cls, row: Any) -> Event:
        received = row.received_at
        if received.tzinfo is None:  # SQLite keeps no zone; the store writes UTC only
            received = received.replace(tzinfo=UTC)
        return cls(
            id=row.id,
            source=row.source,
            provider=row.provider,
            type=row.type,
            delivery_id=row.delivery_id,
            received_at=received,
            headers=dict(row.headers),
            body=bytes(row.body),
            status=row.status,
        )

    def summary(self) -> dict[str, Any]:
        """The JSON shape `gateway events --json` and the API list."""
        return {
            "id": self.id,
            "source": self.source,
            "provider": self.provider,
            "type": self.type,
            "delivery_id": self.delivery_id,
            "status": self.status,
            "received_at": self.received_at.isoformat(),
        }
