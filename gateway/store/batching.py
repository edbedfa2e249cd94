"""Group commit: many concurrent callers, one transaction, each caller awaiting its outcome.

`GroupCommit` is the queue and its committing task; `Journal` commits changes to work (runs,
steps, threads) that way, and the event writer (`ingest`) commits new events that way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import StoreUnavailable
from gateway.store import database
from gateway.store.database import Dialect
from gateway.store.write_gate import Observer, WriteGate

T = TypeVar("T")
Item = TypeVar("Item")
Outcome = TypeVar("Outcome")
Change = Callable[[Connection], Any]
"""A change to work: a plain function of a SQLAlchemy `Connection`, run in a shared transaction."""


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


@dataclass(frozen=True)
class Bulk:
    """A change made only of rows for prepared statements (no reads, no result): the journal
    sends the rows of a whole batch as one executemany per statement."""

    rows: tuple[tuple[Any, dict[str, Any]], ...]

    def __call__(self, conn: Connection) -> None:
        for statement, params in self.rows:
            conn.execute(statement, params)


class Journal(GroupCommit[Change, Any]):
    """Group commit for work: each `apply(change)` runs in a shared transaction, then returns.

    A change is a plain function of a SQLAlchemy `Connection`. On SQLite the whole batch runs
    on one thread over one pysqlite connection (a statement through aiosqlite costs a thread
    hop each; bench/assistants measured 0.6 ms per statement), the rows of its `Bulk` changes
    made into the DB-API's values before the write gate is taken (`Prepared`); on PostgreSQL
    it runs through the async engine's `run_sync`. If a shared transaction fails, its changes
    are retried one by one, so one bad change fails only its own caller.
    """

    name = "journal"

    def __init__(self, engine: AsyncEngine, dialect: Dialect, max_batch: int = 200) -> None:
        super().__init__(max_batch)
        self._engine = engine
        self._sync: Engine | None = None
        self._held: Connection | None = None  # used only on the journal's thread
        self._thread: ThreadPoolExecutor | None = None
        self._gate: WriteGate | None = None
        # Bulk statements as the DB-API takes them on SQLite, by statement and parameter names.
        self._prepared: dict[tuple[Any, tuple[str, ...]], Prepared | None] = {}
        if dialect.name == "sqlite":
            assert engine.url.database is not None
            self._gate = WriteGate(engine.url.database)
            self._sync = database.sqlite_sync_engine(engine.url.database, self._gate)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")

    def observe_writes(self, observe: Observer) -> None:
        """Tell `observe` of each commit's wait for the write gate and its hold (SQLite)."""
        if self._gate is not None:
            self._gate.observe = observe

    async def stop(self) -> None:
        await super().stop()
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._held is not None:
            self._held.close()
            self._held = None
        if self._sync is not None:
            self._sync.dispose()
        if self._gate is not None:
            self._gate.close()

    async def apply(self, change: Callable[[Connection], T]) -> T:
        result: T = await self._submit(change)
        return result

    def _run_batch(
        self, conn: Connection, batch: list[Change], groups: list[Group] | None = None
    ) -> list[Any]:
        # Rows of the same prepared statement from many runs go out as one executemany.
        raw = None
        for statement, rows in _grouped(batch) if groups is None else groups:
            if isinstance(statement, Prepared):
                if raw is None:
                    raw = conn.connection.dbapi_connection
                    assert raw is not None
                raw.executemany(statement.sql, rows)
            else:
                conn.execute(statement, rows)
        return [None if isinstance(change, Bulk) else change(conn) for change in batch]

    def _prepared_groups(self, batch: list[Change]) -> list[Group]:
        """The batch's rows as `_run_batch` sends them, made while the gate is free: on SQLite
        each statement's rows as the DB-API takes them (`Prepared`), where SQLAlchemy's
        executemany spent most of its time on each row's parameters with the lock held."""
        assert self._sync is not None
        groups = _grouped(batch)
        for n, (statement, rows) in enumerate(groups):
            key = (statement, tuple(rows[0]))
            prepared = self._prepared.get(key, _UNKNOWN)
            if prepared is _UNKNOWN:
                prepared = Prepared.of(statement, list(rows[0]), self._sync.dialect)
                if len(self._prepared) < PREPARED_MAX:
                    self._prepared[key] = prepared
            if isinstance(prepared, Prepared) and all(row.keys() == rows[0].keys() for row in rows):
                groups[n] = (prepared, [prepared.values(row) for row in rows])
        return groups

    def _commit_sqlite(self, batch: list[Change], groups: list[Group]) -> list[Any]:
        assert self._sync is not None
        # One connection held by the journal's thread: checking it out of the pool and back in
        # (a reset each time) cost as much as a short batch's statements (bench/sustain).
        if self._held is None:
            self._held = self._sync.connect()
        assert self._gate is not None
        try:
            # Taken before SQLite's lock: this writer and the event writer take turns.
            with self._gate.held(), self._held.begin():
                return self._run_batch(self._held, batch, groups)
        except Exception:
            self._held.close()  # whatever state it is in, the next batch starts afresh
            self._held = None
            raise

    async def _commit(self, batch: list[tuple[Change, asyncio.Future[Any]]]) -> None:
        changes = [change for change, _ in batch]
        try:
            if self._thread is not None:
                loop = asyncio.get_running_loop()
                groups = self._prepared_groups(changes)
                results = await loop.run_in_executor(
                    self._thread, self._commit_sqlite, changes, groups
                )
            else:
                async with self._engine.begin() as conn:
                    results = await conn.run_sync(self._run_batch, changes)
        except Exception as exc:
            if len(batch) > 1:
                for one in batch:
                    await self._commit([one])
                return
            _, future = batch[0]
            if not future.done():
                future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


# Statements kept prepared by the journal (each with its set of parameter names): Bulk changes
# use a handful of module-level statements; past this many, one made per call is compiled
# each time rather than kept for good.
PREPARED_MAX = 256

Group = tuple[Any, list[Any]]
"""A statement and its rows for one executemany: SQLAlchemy's statement and parameter dicts,
or a `Prepared` and its rows of values."""
_UNKNOWN: Any = object()


def _grouped(batch: list[Change]) -> list[Group]:
    """The rows of a batch's `Bulk` changes by statement, in the order statements first come."""
    grouped: dict[int, tuple[Any, list[Any]]] = {}
    for change in batch:
        if isinstance(change, Bulk):
            for statement, params in change.rows:
                grouped.setdefault(id(statement), (statement, []))[1].append(params)
    return list(grouped.values())


@dataclass(frozen=True)
class Prepared:
    """A statement as the DB-API takes it (qmark): its SQL, and how a row of named parameters
    becomes its values, as SQLAlchemy's executemany would make them (each type's bind
    processor: datetimes and JSON as text; a bound default where the row names no value)."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    defaults: dict[str, Any]

    @classmethod
    def of(cls, statement: Any, keys: list[str], dialect: Any) -> Prepared | None:
        """None for a statement SQLAlchemy must run itself (a default computed in Python, an
        expanding parameter, another paramstyle)."""
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        names = compiled.positiontup
        if (
            dialect.paramstyle != "qmark"
            or names is None
            or compiled.insert_prefetch
            or compiled.update_prefetch
            or compiled.literal_execute_params
            or compiled.post_compile_params
        ):
            return None
        binds = [compiled.binds[name] for name in names]
        processors = tuple(b.type.dialect_impl(dialect).bind_processor(dialect) for b in binds)
        named = zip(names, binds, strict=True)
        defaults = {name: bind.effective_value for name, bind in named if name not in keys}
        return cls(compiled.string, tuple(names), processors, defaults)

    def values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        defaults = self.defaults
        return tuple(
            (value if process is None else process(value))
            for value, process in zip(
                (row[n] if n in row else defaults[n] for n in self.names),
                self.processors,
                strict=True,
            )
        )
