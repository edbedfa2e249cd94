"""The event store: deliveries written by the group-committing event writer, read by id,
by filter, or as the pending ones the worker routes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.batching import Journal
from gateway.store.database import Dialect
from gateway.store.ingest import EventWriter
from gateway.store.part import Part
from gateway.store.records import Event, NewEvent, Stored
from gateway.store.schema import event_status, events
from gateway.store.status import EventStatus

# An event with its status (`event_status`, a row of its own): what every read selects.
EVENTS = select(*events.c, event_status.c.status).join_from(events, event_status)
# Built once: the worker scans after every wake-up, and building the statement cost more
# than running it on a short page (bench/sustain).
PENDING = (
    EVENTS.where(event_status.c.status == EventStatus.PENDING)
    .order_by(event_status.c.event_id)
    .limit(bindparam("b_limit"))
)
BY_IDS = EVENTS.where(events.c.id.in_(bindparam("b_ids", expanding=True)))


class Events(Part):
    """`EventStore` on the `events` table."""

    def __init__(
        self, engine: AsyncEngine, journal: Journal, dialect: Dialect, writer: EventWriter
    ) -> None:
        super().__init__(engine, journal, dialect)
        self.writer = writer

    async def add(self, new: NewEvent) -> Stored:
        return await self.writer.add(new)

    def on_commit(self, callback: Callable[[Sequence[Stored]], None]) -> None:
        self.writer.on_commit(callback)

    def settle_unmatched(self, unmatched: Callable[[NewEvent], bool]) -> None:
        self.writer.settle_unmatched(unmatched)

    async def get(self, event_id: int) -> Event | None:
        row = await self._first(EVENTS.where(events.c.id == event_id))
        return Event.from_row(row) if row else None

    async def find(
        self,
        *,
        source: str | None = None,
        status: str | None = None,
        limit: int = 50,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: int | None = None,
    ) -> list[Event]:
        # Newest first; filtered by status, in the order of the status index (the same ids),
        # which a sort of every event in that status would cost otherwise.
        newest = event_status.c.event_id if status else events.c.id
        query = EVENTS.order_by(newest.desc()).limit(limit)
        if source:
            query = query.where(events.c.source == source)
        if status:
            query = query.where(event_status.c.status == status)
        if type:
            query = query.where(events.c.type == type)
        if since is not None:
            query = query.where(events.c.received_at >= since.astimezone(UTC))
        if until is not None:
            query = query.where(events.c.received_at < until.astimezone(UTC))
        if before is not None:
            query = query.where(newest < before)
        return [Event.from_row(row) for row in await self._rows(query)]

    async def pending(self, limit: int = 500) -> list[Event]:
        rows = await self._rows(PENDING, {"b_limit": limit})
        return [Event.from_row(row) for row in rows]

    async def by_ids(self, ids: Iterable[int]) -> list[Event]:
        rows = await self._rows(BY_IDS, {"b_ids": list(ids)})
        return [Event.from_row(row) for row in rows]

    async def set_status(self, event_id: int, status: str) -> None:
        def change(conn: Connection) -> None:
            conn.execute(
                update(event_status)
                .where(event_status.c.event_id == event_id)
                .values(status=status)
            )

        await self.journal.apply(change)

    async def count(self) -> int:
        return int(await self._scalar(select(func.count()).select_from(events)))
