"""Group commit for incoming events: many concurrent requests, one transaction.

No fixed wait: each commit takes everything that queued while the previous one ran, so a lone
request commits at once and a burst shares one fsync. A value the table cannot hold is refused
before it joins a batch; should the database still refuse one row, the others are written
one by one rather than failed with it. Each dialect has its own batch writer beside this module.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import EventDoesNotFit, StoreUnavailable
from gateway.store.batching import GroupCommit
from gateway.store.database import Dialect
from gateway.store.ingest.postgresql import PostgresqlBatchWriter
from gateway.store.ingest.sqlite import SqliteBatchWriter
from gateway.store.records import NewEvent, Stored
from gateway.store.schema import check_fits
from gateway.store.status import EventStatus
from gateway.store.write_gate import Observer

log = structlog.get_logger(__name__)
Pending = tuple[NewEvent, "asyncio.Future[Stored]"]


class EventWriter(GroupCommit[NewEvent, Stored]):
    name = "event writer"

    def __init__(self, engine: AsyncEngine, dialect: Dialect, max_batch: int = 500) -> None:
        # SQLite has one writer: one commit at a time. PostgreSQL commits concurrent
        # transactions side by side, so a few batches may be in flight at once: the commit
        # round trip, not the CPU, bounds one batch at a time. Eight against four: +23% req/s
        # (bench/ingest --store postgresql, four rounds alternated; sixteen gained no more).
        super().__init__(max_batch, concurrency=1 if dialect.name == "sqlite" else 8)
        self._batches: SqliteBatchWriter | PostgresqlBatchWriter = (
            SqliteBatchWriter(engine.url.database)
            if dialect.name == "sqlite"
            else PostgresqlBatchWriter(engine)
        )
        self._on_commit: list[Callable[[Sequence[Stored]], None]] = []
        self._unmatched: Callable[[NewEvent], bool] | None = None

    def on_commit(self, callback: Callable[[Sequence[Stored]], None]) -> None:
        """Call `callback` with the newly stored events that await routing after each commit
        (wakes the worker)."""
        self._on_commit.append(callback)

    def settle_unmatched(self, unmatched: Callable[[NewEvent], bool]) -> None:
        """Store events for which `unmatched` holds as unmatched in the commit that stores
        them, and hand them to nobody: routing an event no rule takes cost the worker a
        commit of its own per batch (bench/ingest, all roles, no rule)."""
        self._unmatched = unmatched

    def observe_writes(self, observe: Observer) -> None:
        """Tell `observe` of each commit's wait for the write gate and its hold (SQLite)."""
        if isinstance(self._batches, SqliteBatchWriter):
            self._batches.observe_writes(observe)

    def start(self) -> None:
        self._batches.open()
        super().start()

    async def stop(self) -> None:
        await super().stop()
        self._batches.close()

    async def add(self, new: NewEvent) -> Stored:
        """Store one event; returns once it is committed (or found already stored).

        Raises `EventDoesNotFit` at once, without joining a batch, for a value the table
        cannot hold: on PostgreSQL it would fail the whole batch's statement.
        """
        check_fits(new)
        if self._unmatched is not None and self._unmatched(new):
            new = replace(new, status=EventStatus.UNMATCHED.value)
        return await self._submit(new)

    async def _commit(self, batch: list[Pending]) -> None:
        try:
            stored = await self._batches.write([new for new, _ in batch])
        except Exception as exc:
            if about_one_row(exc):
                await self._refuse_alone(batch, exc)
                return
            # Any other database failure: nobody in the batch gets a 2xx.
            log.error("store.commit_failed", error=str(exc), batch=len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(str(exc)))
            return
        for (_, future), result in zip(batch, stored, strict=True):
            if not future.done():
                future.set_result(result)
        fresh = [s for s in stored if not s.duplicate and s.event.status == EventStatus.PENDING]
        if fresh:
            for callback in self._on_commit:
                callback(fresh)

    async def _refuse_alone(self, batch: list[Pending], exc: Exception) -> None:
        """The database refused a value of some row: write the rows one at a time, so only
        that row's request is refused. `add` checks every value first; this is the defence
        behind it, for a constraint the check does not know."""
        if len(batch) > 1:
            log.warning("store.batch_split", error=str(exc), batch=len(batch))
            for pending in batch:
                await self._commit([pending])
            return
        [(new, future)] = batch
        log.error("store.event_refused", error=str(exc), source=new.source)
        if future.done():
            return
        try:
            check_fits(new)  # names the field, where the check knows what is wrong
        except EventDoesNotFit as named:
            future.set_exception(named)
        else:
            future.set_exception(EventDoesNotFit(f"the store refused the event: {exc}"))


def about_one_row(exc: Exception) -> bool:
    """Whether the database refused a value (of some row), rather than failed as a whole."""
    if isinstance(exc, (UnicodeError, sqlite3.DataError, sqlite3.IntegrityError)):
        return True
    # asyncpg's errors carry the SQLSTATE: class 22 is data exceptions (too long, NUL, bad
    # encoding), 23 integrity constraint violations.
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in ("22", "23")
