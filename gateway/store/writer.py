"""Group commit for incoming events: many concurrent requests, one transaction.

No fixed wait: each commit takes everything that queued while the previous one ran, so a lone
request commits at once and a burst shares one fsync. A value the table cannot hold is refused
before it joins a batch; should the database still refuse one row, the others are written
one by one rather than failed with it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from typing import Generic, TypeVar

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import EventDoesNotFit, StoreUnavailable
from gateway.store.database import Dialect
from gateway.store.records import NewEvent, Stored
from gateway.store.schema import check_fits

log = structlog.get_logger(__name__)
Pending = tuple[NewEvent, "asyncio.Future[Stored]"]
Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class GroupCommit(Generic[Item, Outcome]):
    """A queue of items, each awaited by its caller, committed in batches by one task.

    No fixed wait: each batch is whatever queued while the previous one was committing.
    Subclasses implement `_commit(batch)` and resolve every future in it.
    """

    name = "group-commit"

    def __init__(self, max_batch: int, concurrency: int = 1) -> None:
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._queue: list[tuple[Item, asyncio.Future[Outcome]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        # Commits already sent finish: their rows may be in, so their callers hear the outcome.
        await asyncio.gather(*self._inflight, return_exceptions=True)
        for _, future in self._queue:
            if not future.done():
                future.set_exception(StoreUnavailable("the store is shutting down"))
        self._queue.clear()

    async def _submit(self, item: Item) -> Outcome:
        if self._task is None:
            raise StoreUnavailable(f"the {self.name} is not running")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if len(self._inflight) >= self._concurrency:
                    # All commit slots busy: the queue grows into the next, larger batch.
                    await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                if self._concurrency == 1:
                    await self._commit(batch)
                    continue
                task = asyncio.create_task(self._commit(batch))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Outcome]]]) -> None:
        raise NotImplementedError


class EventWriter(GroupCommit[NewEvent, Stored]):
    name = "event writer"

    def __init__(self, engine: AsyncEngine, dialect: Dialect, max_batch: int = 500) -> None:
        # SQLite has one writer: one commit at a time. PostgreSQL commits concurrent
        # transactions side by side, so a few batches may be in flight at once: the commit
        # round trip, not the CPU, bounds one batch at a time (bench/ingest --store postgresql).
        super().__init__(max_batch, concurrency=1 if dialect.name == "sqlite" else 4)
        self._engine = engine
        self._sqlite = SqliteBatchWriter(engine.url.database) if dialect.name == "sqlite" else None
        self._on_commit: list[Callable[[Sequence[Stored]], None]] = []

    def on_commit(self, callback: Callable[[Sequence[Stored]], None]) -> None:
        """Call `callback` with the newly stored events after each commit (wakes the worker)."""
        self._on_commit.append(callback)

    def start(self) -> None:
        if self._sqlite is not None:
            self._sqlite.open()
        super().start()

    async def stop(self) -> None:
        await super().stop()
        if self._sqlite is not None:
            self._sqlite.close()

    async def add(self, new: NewEvent) -> Stored:
        """Store one event; returns once it is committed (or found already stored).

        Raises `EventDoesNotFit` at once, without joining a batch, for a value the table
        cannot hold: on PostgreSQL it would fail the whole batch's statement.
        """
        check_fits(new)
        return await self._submit(new)

    async def _commit(self, batch: list[Pending]) -> None:
        try:
            stored = await self._write([new for new, _ in batch])
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
        fresh = [s for s in stored if not s.duplicate]
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

    async def _write(self, batch: list[NewEvent]) -> list[Stored]:
        if self._sqlite is not None:
            return await self._sqlite.write(batch)
        return await write_postgresql(self._engine, batch)


def about_one_row(exc: Exception) -> bool:
    """Whether the database refused a value (of some row), rather than failed as a whole."""
    if isinstance(exc, (UnicodeError, sqlite3.DataError, sqlite3.IntegrityError)):
        return True
    # asyncpg's errors carry the SQLSTATE: class 22 is data exceptions (too long, NUL, bad
    # encoding), 23 integrity constraint violations.
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in ("22", "23")


# One statement per batch: the rows travel as eight arrays, so the statement text (and
# asyncpg's prepared statement for it) is the same whatever the batch size. Rows go in
# batch order, so ids follow arrival order; a dedup key already stored (or twice in the
# batch) is skipped by ON CONFLICT and looked up afterwards.
INSERT_EVENTS = """
INSERT INTO events (source, provider, type, delivery_id, dedup_key, headers, body, received_at)
SELECT source, provider, type, delivery_id, dedup_key, headers::json, body, received_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::bytea[], $8::timestamptz[]) WITH ORDINALITY
     AS new(source, provider, type, delivery_id, dedup_key, headers, body, received_at, n)
ORDER BY n
ON CONFLICT (source, dedup_key) DO NOTHING
RETURNING id, source, dedup_key, delivery_id
"""
FIND_EVENTS = """
SELECT id, source, dedup_key, delivery_id FROM events
WHERE (source, dedup_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""
Key = tuple[str, str]
"""(source, dedup_key): what the events table is unique on."""
Found = tuple[int, str]
"""An event already stored: its id and the delivery id it came with."""


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


async def write_postgresql(engine: AsyncEngine, batch: list[NewEvent]) -> list[Stored]:
    """PostgreSQL's ingest path: asyncpg directly, on a connection of the engine's pool.

    The same table and semantics as the SQLAlchemy insert it replaces, at a fraction of the
    CPU per event (measured with bench/ingest). The insert is one statement, so it commits
    atomically on its own; the lookup of duplicates runs after it and sees every row that a
    concurrent batch committed first.
    """
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        rows = await raw.fetch(
            INSERT_EVENTS,
            [n.source for n in batch],
            [n.provider for n in batch],
            [n.type for n in batch],
            [n.delivery_id for n in batch],
            [n.dedup_key for n in batch],
            [orjson.dumps(n.headers).decode() for n in batch],
            [n.body for n in batch],
            [n.received_at for n in batch],
        )
        inserted = {(r["source"], r["dedup_key"]): (r["id"], r["delivery_id"]) for r in rows}
        missing = sorted({(n.source, n.dedup_key) for n in batch} - inserted.keys())
        existing: dict[Key, Found] = {}
        if missing:
            found = await raw.fetch(
                FIND_EVENTS, [source for source, _ in missing], [k for _, k in missing]
            )
            existing = {(r["source"], r["dedup_key"]): (r["id"], r["delivery_id"]) for r in found}
    return outcomes(batch, inserted, existing)


class SqliteBatchWriter:
    """SQLite's ingest path: one stdlib connection on one thread, one statement per batch.

    Measured (bench/ingest) at about a fifth of the CPU per event of the same insert through
    SQLAlchemy and aiosqlite; `sqlite3` releases the GIL while SQLite works, so the commit
    runs beside the event loop instead of competing with it. Same table, same semantics.
    """

    def __init__(self, path: str | None) -> None:
        if not path:
            raise ValueError("the SQLite store needs a file path")
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-ingest")
        self._db: sqlite3.Connection | None = None
        self._columns = (
            "source",
            "provider",
            "type",
            "delivery_id",
            "dedup_key",
            "headers",
            "body",
            "received_at",
        )

    def open(self) -> None:
        self._thread.submit(self._connect).result()

    def close(self) -> None:
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        self._thread.submit(disconnect).result()

    def _connect(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=10000")
        self._db = db

    async def write(self, batch: list[NewEvent]) -> list[Stored]:
        # Parameters are built here, on the event loop, so the writer thread needs the GIL as
        # little as possible: it mostly waits in SQLite, which runs without it.
        params: list[object] = []
        for new in batch:
            params += (
                new.source,
                new.provider,
                new.type,
                new.delivery_id,
                new.dedup_key,
                orjson.dumps(new.headers).decode(),
                new.body,
                # The text form SQLAlchemy's SQLite DateTime reads back (naive UTC).
                new.received_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
            )
        keys = {(new.source, new.dedup_key) for new in batch}
        loop = asyncio.get_running_loop()
        inserted, existing = await loop.run_in_executor(
            self._thread, self._insert, len(batch), keys, params
        )
        return outcomes(batch, inserted, existing)

    def _insert(
        self, rows: int, keys: set[Key], params: list[object]
    ) -> tuple[dict[Key, Found], dict[Key, Found]]:
        db = self._db
        if db is None:
            raise StoreUnavailable("the SQLite ingest connection is closed")
        row = "(" + ",".join("?" * len(self._columns)) + ")"
        try:
            db.execute("BEGIN IMMEDIATE")
            inserted = {
                (source, key): (event_id, delivery_id)
                for event_id, source, key, delivery_id in db.execute(
                    f"INSERT INTO events ({','.join(self._columns)}) VALUES "
                    + ",".join([row] * rows)
                    + " ON CONFLICT (source, dedup_key) DO NOTHING"
                    " RETURNING id, source, dedup_key, delivery_id",
                    params,
                ).fetchall()
            }
            existing: dict[Key, Found] = {}
            for source, key in sorted(keys - inserted.keys()):
                existing[(source, key)] = db.execute(
                    "SELECT id, delivery_id FROM events WHERE source = ? AND dedup_key = ?",
                    (source, key),
                ).fetchone()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return inserted, existing
