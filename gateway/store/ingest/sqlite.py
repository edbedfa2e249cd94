"""SQLite's ingest path: one stdlib connection on its own thread, one statement per batch.

Measured (bench/ingest) at about a fifth of the CPU per event of the same insert through
SQLAlchemy and aiosqlite; `sqlite3` releases the GIL while SQLite works, so the commit runs
beside the event loop instead of competing with it. Same table, same semantics.

A batch is one call into SQLite: every call returns to wait for the GIL, which the event loop
holds most of the time under load, and whatever lock the writer holds waits with it. A batch
of up to `ONE_STATEMENT_MAX` events is one INSERT that is its own transaction, made after the
writer's turn at the write gate and without holding it (`WriteGate.turn`): SQLite takes and
lets go of its lock inside the call. Which rows it skipped as duplicates is read afterwards.
(BEGIN, four pieces with RETURNING and COMMIT under the gate held it 169 us per event at 3,800
posts/s, the one INSERT under the gate 125, where SQLite alone takes 45: bench/sustain's
write lock line.)
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from gateway.errors import StoreUnavailable
from gateway.store.ingest.rows import COLUMNS, Found, Key, missing, outcomes, rows
from gateway.store.records import NewEvent, Stored
from gateway.store.sqlite_values import chunks, insert_rows, sqlite_time
from gateway.store.write_gate import (
    NO_BUSY_WAIT,
    Observer,
    WriteGate,
    begin_immediate,
    until_not_busy,
)

# Events per batch written in one statement of their own size (at most this many prepared
# shapes, ~6 KB each); a larger batch goes in pieces of 2^k rows (`chunks`) in a transaction.
ONE_STATEMENT_MAX = 64
_LOOKUP = "SELECT id, delivery_id FROM events WHERE source = ? AND dedup_key = ?"


@cache
def _insert_batch(size: int) -> str:
    return insert_rows("events", COLUMNS, size) + " ON CONFLICT (source, dedup_key) DO NOTHING"


@cache
def _insert_rows(size: int) -> str:
    return _insert_batch(size) + " RETURNING id, source, dedup_key, delivery_id"


class SqliteBatchWriter:
    """Writes batches of new events to a SQLite file; `open()` before, `close()` after."""

    def __init__(self, path: str | None) -> None:
        if not path:
            raise ValueError("the SQLite store needs a file path")
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-ingest")
        self._db: sqlite3.Connection | None = None
        # Taken around each write: this writer and the journal take turns (write_gate).
        self._gate = WriteGate(path)

    def open(self) -> None:
        self._thread.submit(self._connect).result()

    def observe_writes(self, observe: Observer) -> None:
        self._gate.observe = observe

    def close(self) -> None:
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._gate.close()

        self._thread.submit(disconnect).result()

    def _connect(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA busy_timeout={NO_BUSY_WAIT}")  # waits in the gate's pauses instead
        self._db = db

    async def write(self, batch: list[NewEvent]) -> list[Stored]:
        # Parameters are built here, on the event loop, so the writer thread needs the GIL as
        # little as possible: it mostly waits in SQLite, which runs without it.
        params = [value for row in rows(batch, sqlite_time) for value in row]
        loop = asyncio.get_running_loop()
        inserted, existing = await loop.run_in_executor(self._thread, self._insert, batch, params)
        return outcomes(batch, inserted, existing)

    def _insert(
        self, batch: list[NewEvent], params: list[object]
    ) -> tuple[dict[Key, Found], dict[Key, Found]]:
        db = self._db
        if db is None:
            raise StoreUnavailable("the SQLite ingest connection is closed")
        if len(batch) > ONE_STATEMENT_MAX:
            with self._gate.held():
                return self._insert_held(db, batch, params)
        cursor = self._insert_one(db, _insert_batch(len(batch)), params)
        return self._found(db, batch, params, cursor.lastrowid or 0, cursor.rowcount)

    def _insert_one(self, db: sqlite3.Connection, sql: str, params: list[object]) -> sqlite3.Cursor:
        """One INSERT, its own transaction (the connection autocommits): durable once the call
        returns. Made after the writer's turn, without the gate; should another gated writer
        have taken SQLite's lock first (the journal, whose turn came next), wait for the turn
        after it."""
        gate = self._gate
        asked = time.monotonic()
        deadline = asked + gate.wait
        started = asked

        def after_turn() -> sqlite3.Cursor:
            nonlocal started
            gate.turn(deadline)
            started = time.monotonic()
            return db.execute(sql, params)

        # Busy again: a writer that takes no turn (retention, a migration), or the one whose
        # turn came next and took SQLite's lock first; each try takes a turn anew.
        cursor = until_not_busy(after_turn, gate, deadline)
        gate.told(started - asked, time.monotonic() - started)
        return cursor

    def _found(
        self,
        db: sqlite3.Connection,
        batch: list[NewEvent],
        params: list[object],
        last: int,
        count: int,
    ) -> tuple[dict[Key, Found], dict[Key, Found]]:
        """Which events one INSERT stored (`count` rows, the last with id `last`) and which it
        skipped as stored before. SQLite has one writer and numbers a statement's rows in
        VALUES order, so stored rows have consecutive ids."""
        if count == len(batch):
            first = last - count + 1
            stored = {
                (new.source, new.dedup_key): (first + n, new.delivery_id)
                for n, new in enumerate(batch)
            }
            return stored, {}
        # Some were there already (or twice in the batch): read each key's row, committed.
        ours = range(last - count + 1, last + 1) if count else range(0)
        inserted: dict[Key, Found] = {}
        existing: dict[Key, Found] = {}
        gone: set[Key] = set()
        deadline = time.monotonic() + self._gate.wait

        def lookup(key: Key) -> Found | None:
            row: Found | None = db.execute(_LOOKUP, key).fetchone()
            return row

        for key in sorted({(new.source, new.dedup_key) for new in batch}):
            row = until_not_busy(functools.partial(lookup, key), self._gate, deadline)
            if row is None:
                gone.add(key)  # removed since the INSERT skipped it (retention): store it now
            else:
                (inserted if row[0] in ours else existing)[key] = (row[0], row[1])
        if gone:
            again = [n for n, new in enumerate(batch) if (new.source, new.dedup_key) in gone]
            width = len(COLUMNS)
            values = [v for n in again for v in params[n * width : (n + 1) * width]]
            with self._gate.held():
                more, also = self._insert_held(db, [batch[n] for n in again], values)
            inserted.update(more)
            existing.update(also)
        return inserted, existing

    def _insert_held(
        self, db: sqlite3.Connection, batch: list[NewEvent], params: list[object]
    ) -> tuple[dict[Key, Found], dict[Key, Found]]:
        try:
            begin_immediate(db, self._gate)
            inserted: dict[Key, Found] = {}
            width = len(COLUMNS)
            for start, size in chunks(len(batch)):
                inserted.update(
                    ((source, key), (event_id, delivery_id))
                    for event_id, source, key, delivery_id in db.execute(
                        _insert_rows(size), params[start * width : (start + size) * width]
                    ).fetchall()
                )
            existing: dict[Key, Found] = {}
            for source, key in missing(batch, inserted):
                existing[(source, key)] = db.execute(_LOOKUP, (source, key)).fetchone()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return inserted, existing
