"""Group commit for incoming events: many concurrent requests, one transaction.

No fixed wait: each commit takes everything that queued while the previous one ran, so a lone
request commits at once and a burst shares one fsync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import asdict

import structlog
from sqlalchemy import select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import StoreUnavailable
from gateway.store.database import Dialect
from gateway.store.records import NewEvent, Stored
from gateway.store.schema import events

log = structlog.get_logger(__name__)
Pending = tuple[NewEvent, "asyncio.Future[Stored]"]


class EventWriter:
    def __init__(self, engine: AsyncEngine, dialect: Dialect, max_batch: int = 500) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: list[Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_commit: list[Callable[[Sequence[Stored]], None]] = []
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        self._insert = (
            insert(events)
            .on_conflict_do_nothing(index_elements=["source", "delivery_id"])
            .returning(events.c.id, events.c.source, events.c.delivery_id)
        )

    def on_commit(self, callback: Callable[[Sequence[Stored]], None]) -> None:
        """Call `callback` with the newly stored events after each commit (wakes the worker)."""
        self._on_commit.append(callback)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for _, future in self._queue:
            if not future.done():
                future.set_exception(StoreUnavailable("the store is shutting down"))
        self._queue.clear()

    async def add(self, new: NewEvent) -> Stored:
        """Store one event; returns once it is committed (or found already stored)."""
        if self._task is None:
            raise StoreUnavailable("the event writer is not running")
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._queue.append((new, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._commit(batch)

    async def _commit(self, batch: list[Pending]) -> None:
        try:
            stored = await self._write([new for new, _ in batch])
        except Exception as exc:  # any database failure: nobody in the batch gets a 2xx
            log.error("store.commit_failed", error=str(exc), batch=len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(str(exc)))
            return
        for (_, future), result in zip(batch, stored, strict=True):
            if not future.done():
                future.set_result(result)
        fresh = [s for s in stored if not s.duplicate]
        if fresh:
            for callback in self._on_commit:
                callback(fresh)

    async def _write(self, batch: list[NewEvent]) -> list[Stored]:
        rows = [asdict(new) for new in batch]
        async with self._engine.begin() as conn:
            inserted = {
                (r.source, r.delivery_id): r.id for r in await conn.execute(self._insert, rows)
            }
            keys = [(n.source, n.delivery_id) for n in batch]
            missing = [k for k in keys if k not in inserted]
            existing = {}
            if missing:
                query = select(events.c.id, events.c.source, events.c.delivery_id).where(
                    tuple_(events.c.source, events.c.delivery_id).in_(missing)
                )
                existing = {(r.source, r.delivery_id): r.id for r in await conn.execute(query)}
        results = []
        for new, key in zip(batch, keys, strict=True):
            if key in inserted:
                # The first of several equal deliveries in one batch is the stored one.
                results.append(Stored(inserted.pop(key), new, duplicate=False))
                existing[key] = results[-1].id
            else:
                results.append(Stored(existing[key], new, duplicate=True))
        return results
