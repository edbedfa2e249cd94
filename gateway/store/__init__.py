"""The durable store: events (and, later, runs, steps, threads) in SQLite or PostgreSQL.

`Store` is the one object the rest of the gateway talks to.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from gateway.errors import SchemaMismatch
from gateway.store import database
from gateway.store.ingest import EventWriter
from gateway.store.records import Event, NewEvent, NewRun, Run, Step, Stored
from gateway.store.schema import events, session_revocations
from gateway.store.work import WorkStore

__all__ = ["Event", "NewEvent", "NewRun", "Run", "Step", "Store", "Stored"]


class Store(WorkStore):
    def __init__(self, url: str) -> None:
        self.url = url
        engine, dialect = database.connect(url)
        super().__init__(engine, database.write_engine(engine, dialect), dialect)
        self.writer = EventWriter(self.engine, self.dialect)

    async def open(self, *, migrate: bool = True) -> None:
        """Bring the schema to the head revision (if `migrate`) and start the writer.

        Refuses a schema it does not know, and one that is behind when not migrating.
        """
        if migrate:
            await database.upgrade(self.write_engine)
        else:
            revision = await database.check_known(self.engine)
            head = database.head_revision()
            if revision != head:
                raise SchemaMismatch(revision, head)
        self.writer.start()
        self.journal.start()

    async def close(self) -> None:
        await self.journal.stop()
        await self.writer.stop()
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def add_event(self, new: NewEvent) -> Stored:
        return await self.writer.add(new)

    async def events(
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
        """Newest first; `since`/`until` bound `received_at`, `before` pages by id."""
        query = select(events).order_by(events.c.id.desc()).limit(limit)
        if source:
            query = query.where(events.c.source == source)
        if status:
            query = query.where(events.c.status == status)
        if type:
            query = query.where(events.c.type == type)
        if since is not None:
            query = query.where(events.c.received_at >= since.astimezone(UTC))
        if until is not None:
            query = query.where(events.c.received_at < until.astimezone(UTC))
        if before is not None:
            query = query.where(events.c.id < before)
        async with self.engine.connect() as conn:
            return [Event.from_row(row) for row in await conn.execute(query)]

    async def set_event_status(self, event_id: int, status: str) -> None:
        def change(conn: Connection) -> None:
            conn.execute(update(events).where(events.c.id == event_id).values(status=status))

        await self.journal.apply(change)

    async def event(self, event_id: int) -> Event | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(events).where(events.c.id == event_id))).first()
        return Event.from_row(row) if row else None

    async def events_by_id(self, ids: Iterable[int]) -> list[Event]:
        query = select(events).where(events.c.id.in_(list(ids)))
        async with self.engine.connect() as conn:
            return [Event.from_row(row) for row in await conn.execute(query)]

    async def count_events(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(events))).scalar_one())

    async def revoke_session(
        self, nonce: str, expires_at: datetime, *, now: datetime | None = None
    ) -> None:
        """Refuse a dashboard session from now on, everywhere; forget expired revocations."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        insert = postgresql.insert if self.dialect.name == "postgresql" else sqlite.insert
        # A second logout with the same cookie (or on another replica) changes nothing.
        record = (
            insert(session_revocations)
            .values(nonce=nonce, expires_at=expires_at.astimezone(UTC))
            .on_conflict_do_nothing(index_elements=["nonce"])
        )
        expired = delete(session_revocations).where(session_revocations.c.expires_at <= now)

        def change(conn: Connection) -> None:
            conn.execute(expired)
            if expires_at > now:  # an expired cookie is refused by its own expiry
                conn.execute(record)

        await self.journal.apply(change)

    async def session_revoked(self, nonce: str) -> bool:
        query = select(session_revocations.c.nonce).where(session_revocations.c.nonce == nonce)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None
