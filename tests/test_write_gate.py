"""The SQLite write gate: the event writer and the journal take turns through it.

SQLite's own busy handler sleeps 1-100 ms between tries, and under the door's stream of
commits the worker's journal kept losing (bench/writers, docs/benchmarks.md). Writers that
hold the gate are woken the moment it is let go; these tests hold it and check who waits.
"""

from __future__ import annotations

import asyncio
import fcntl
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.errors import StoreUnavailable
from gateway.store import Store
from gateway.store.ingest.sqlite import SqliteBatchWriter
from gateway.store.write_gate import WriteGate
from tests.test_plan import store as store  # the fixture: a store on a fresh SQLite file
from tests.test_store import new_event

# Long enough for a write that does not wait for the gate to be over many times.
SETTLE_SECONDS = 0.3


def gate_of(tmp_path: Path) -> WriteGate:
    return WriteGate(str(tmp_path / "gateway.db"))


async def test_the_event_writer_waits_while_another_writer_holds_the_gate(
    store: Store, tmp_path: Path
) -> None:
    gate = gate_of(tmp_path)
    with gate.held():
        writing = asyncio.ensure_future(store.events.add(new_event("gated-1")))
        await asyncio.sleep(SETTLE_SECONDS)
        assert not writing.done(), "the event was written while another writer held the gate"
    stored = await asyncio.wait_for(writing, 10)
    assert not stored.duplicate
    assert (await store.events.get(stored.id)) is not None


async def test_the_journal_waits_while_another_writer_holds_the_gate(
    store: Store, tmp_path: Path
) -> None:
    stored = await store.events.add(new_event("gated-2"))
    gate = gate_of(tmp_path)
    with gate.held():
        applying = asyncio.ensure_future(
            store.journal.apply(
                lambda conn: conn.execute(
                    text("UPDATE event_status SET status = 'error' WHERE event_id = :id"),
                    {"id": stored.id},
                )
            )
        )
        await asyncio.sleep(SETTLE_SECONDS)
        assert not applying.done(), "the journal committed while another writer held the gate"
    await asyncio.wait_for(applying, 10)
    event = await store.events.get(stored.id)
    assert event is not None and event.status == "error"


def _take_and_release(path: str, gate: WriteGate, taken: multiprocessing.Queue[str]) -> None:
    with gate.held():
        taken.put(path)


def test_a_forked_process_opens_its_own_gate_and_waits_for_the_parents(tmp_path: Path) -> None:
    # A descriptor inherited across fork is the parent's open file: flock would let the child
    # in beside the parent. The gate reopens its file in the child.
    gate = gate_of(tmp_path)
    taken: multiprocessing.Queue[str] = multiprocessing.get_context("fork").Queue()
    with gate.held():
        child = multiprocessing.get_context("fork").Process(
            target=_take_and_release, args=(gate.path, gate, taken)
        )
        child.start()
        child.join(SETTLE_SECONDS)
        assert child.is_alive(), "the child took the gate the parent holds"
        assert taken.empty()
    child.join(10)
    assert child.exitcode == 0
    assert taken.get(timeout=5) == gate.path
    gate.close()


def test_two_gates_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    # The event writer and the journal of one process are two writers: each has its own gate.
    first, second = gate_of(tmp_path), gate_of(tmp_path)
    with first.held():
        fd = os.open(second.path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    with second.held():
        pass
    first.close()
    second.close()


def test_a_writer_that_lets_the_gate_go_comes_after_the_one_waiting(tmp_path: Path) -> None:
    # The door commits back to back: with the gate alone it took it again before the woken
    # journal ran. Through the turnstile the waiting writer goes first.
    door, journal = gate_of(tmp_path), gate_of(tmp_path)
    order: list[str] = []

    def journal_writes() -> None:
        with journal.held():
            order.append("journal")

    waiting = threading.Thread(target=journal_writes)
    with door.held():
        order.append("door")
        waiting.start()
        time.sleep(SETTLE_SECONDS)  # the journal waits for the gate, holding the turnstile
    with door.held():
        order.append("door again")
    waiting.join(10)
    assert order == ["door", "journal", "door again"]
    door.close()
    journal.close()


def test_a_writer_gives_up_after_the_wait_with_a_clear_error(tmp_path: Path) -> None:
    # A gateway process stopped mid-commit keeps the gate: the others fail as SQLite's own
    # busy_timeout would, not hang (WAIT_SECONDS, 10 s; 0.4 s here).
    holder, waiter = gate_of(tmp_path), WriteGate(str(tmp_path / "gateway.db"), wait=0.4)
    with holder.held():
        began = time.monotonic()
        error = r"another writer has held .*write\.lock"
        with pytest.raises(StoreUnavailable, match=error), waiter.held():
            pass
        assert time.monotonic() - began >= 0.4
    # At the edge: a gate let go within the wait is taken.
    taken, order = threading.Event(), []

    def hold_a_while() -> None:
        with holder.held():
            taken.set()
            time.sleep(0.2)
            order.append("holder done")

    briefly = threading.Thread(target=hold_a_while)
    briefly.start()
    taken.wait(5)
    with waiter.held():
        order.append("waiter")
    briefly.join(5)
    assert order == ["holder done", "waiter"]
    holder.close()
    waiter.close()


async def test_each_turn_is_told_with_its_wait_and_hold(store: Store, tmp_path: Path) -> None:
    # What gateway_store_write_seconds shows: how long each writer waited for the gate, and
    # held it. An observer that fails does not fail the write.
    turns: list[tuple[str, float, float]] = []

    def observe(writer: str, waited: float, held: float) -> None:
        turns.append((writer, waited, held))
        if len(turns) == 1:
            raise RuntimeError("a broken metric")

    store.observe_writes(observe)
    gate = gate_of(tmp_path)
    with gate.held():
        writing = asyncio.ensure_future(store.events.add(new_event("observed-1")))
        await asyncio.sleep(SETTLE_SECONDS)
    stored = await asyncio.wait_for(writing, 10)
    assert (await store.events.get(stored.id)) is not None
    [(writer, waited, held)] = turns
    assert writer == "events"
    assert waited >= SETTLE_SECONDS * 0.9, "the wait for the gate another writer held"
    assert 0 < held < waited

    await store.journal.apply(
        lambda conn: conn.execute(
            text("UPDATE event_status SET status = 'error' WHERE event_id = :id"), {"id": stored.id}
        )
    )
    assert [writer for writer, _, _ in turns] == ["events", "journal"]
    assert turns[1][1] < SETTLE_SECONDS and turns[1][2] > 0
    gate.close()


async def test_the_event_writer_makes_one_call_into_sqlite_while_it_holds_the_gate(
    store: Store, tmp_path: Path
) -> None:
    # Each call returns to wait for the GIL, which the event loop holds under load, and the
    # gate waits with it: BEGIN, four pieces and COMMIT held it 169 us per event where SQLite
    # alone takes 45. A batch is now one INSERT, its own transaction; the duplicates in it
    # (of a stored event, and twice in the batch) are read after the gate is let go.
    before = await store.events.add(new_event("one-call-0"))
    statements: list[str] = []
    gate = gate_of(tmp_path)
    writer = store.writer._batches
    assert isinstance(writer, SqliteBatchWriter) and writer._db is not None
    writer._db.set_trace_callback(statements.append)
    turns: list[float] = []
    writer._gate.observe = lambda _waited, held: turns.append(held)
    keys = ["one-call-0", *[f"one-call-{n}" for n in range(1, 13)], "one-call-5"]
    with gate.held():  # the batch waits for the gate
        adding = [asyncio.ensure_future(store.events.add(new_event(key))) for key in keys]
        await asyncio.sleep(SETTLE_SECONDS)
    stored = await asyncio.wait_for(asyncio.gather(*adding), 10)
    writer._db.set_trace_callback(None)

    assert stored[0].duplicate and stored[0].id == before.id
    assert stored[-1].duplicate and stored[-1].id == stored[5].id
    fresh = stored[1:-1]
    assert not any(s.duplicate for s in fresh)
    assert [s.id for s in fresh] == sorted(s.id for s in fresh) and len({s.id for s in fresh}) == 12
    for one in fresh:
        event = await store.events.get(one.id)
        assert event is not None and event.delivery_id == one.event.delivery_id
    # The status row's trigger runs inside the INSERT's call, traced again under the INSERT's
    # own text once per row: one call is one run of the same text.
    traced = [sql for sql in statements if not sql.startswith("SELECT")]
    writes = [sql for n, sql in enumerate(traced) if n == 0 or sql != traced[n - 1]]
    assert len(writes) == len(turns), "one statement per turn at the gate"
    assert all(sql.startswith("INSERT INTO events") for sql in writes)
    gate.close()


async def test_a_batch_larger_than_one_statement_goes_in_pieces(
    store: Store, tmp_path: Path
) -> None:
    # Past ONE_STATEMENT_MAX events a batch is written in pieces of 2^k rows, in a transaction.
    from gateway.store.ingest.sqlite import ONE_STATEMENT_MAX

    count = ONE_STATEMENT_MAX + 7
    gate = gate_of(tmp_path)
    keys = [f"pieces-{n}" for n in range(count)] + ["pieces-3"]
    with gate.held():
        adding = [asyncio.ensure_future(store.events.add(new_event(key))) for key in keys]
        await asyncio.sleep(SETTLE_SECONDS)
    stored = await asyncio.wait_for(asyncio.gather(*adding), 10)
    assert [s.duplicate for s in stored] == [False] * count + [True]
    assert len({s.id for s in stored[:-1]}) == count and stored[-1].id == stored[3].id
    gate.close()


async def test_a_duplicate_whose_stored_row_is_gone_by_the_lookup_is_stored_after_all(
    store: Store,
) -> None:
    # The INSERT skips a duplicate; which row it duplicates is read after the gate is let go.
    # Should retention have removed that row in between, the event is stored after all, not
    # answered as a duplicate of nothing (nor a crash).
    from gateway.store.ingest.rows import rows
    from gateway.store.sqlite_values import sqlite_time

    writer = store.writer._batches
    assert isinstance(writer, SqliteBatchWriter) and writer._db is not None
    batch = [new_event("gone-1"), new_event("gone-2")]
    params = [value for row in rows(batch, sqlite_time) for value in row]
    # As if the INSERT had stored gone-1 alone (id 41) and skipped gone-2, whose row is gone.
    db = writer._db
    db.execute("INSERT INTO events (id, source, provider, type, dedup_key, delivery_id,"
               " received_at, headers, body) VALUES (41, 'shop', 'shopify', 'orders/create',"
               " 'gone-1', 'gone-1', '2026-11-25 12:30:15.123456', '{}', x'7b7d')")  # fmt: skip
    inserted, existing = await asyncio.get_running_loop().run_in_executor(
        writer._thread, writer._found, db, batch, params, 41, 1
    )
    assert existing == {}
    assert inserted[("shop", "gone-1")] == (41, "gone-1")
    again = inserted[("shop", "gone-2")][0]
    event = await store.events.get(again)
    assert event is not None and event.delivery_id == "gone-2" and again > 41


def _gate_free(path: str) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # lets go of the lock, if taken


async def test_the_event_writer_inserts_after_its_turn_without_holding_the_gate(
    store: Store, tmp_path: Path
) -> None:
    # The INSERT is one call into SQLite, which takes and lets go of its own lock inside it.
    # Held around the call, the gate stayed held until the writer had the GIL back from the
    # event loop: 125 us per event against SQLite's 45 (bench/sustain's write lock line).
    writer = store.writer._batches
    assert isinstance(writer, SqliteBatchWriter) and writer._db is not None
    gate = gate_of(tmp_path)
    free_while: dict[str, bool] = {}

    def traced(sql: str) -> None:  # runs inside the call, as the statement starts
        free_while[sql.split()[0]] = _gate_free(gate.path)

    writer._db.set_trace_callback(traced)
    with gate.held():  # still waits for its turn behind a writer holding the gate
        writing = asyncio.ensure_future(store.events.add(new_event("ungated-1")))
        await asyncio.sleep(SETTLE_SECONDS)
        assert not writing.done(), "the event was written before its turn"
    stored = await asyncio.wait_for(writing, 10)
    writer._db.set_trace_callback(None)
    assert free_while == {"INSERT": True}, "the gate was held during the INSERT"
    assert (await store.events.get(stored.id)) is not None
    gate.close()


def _hold_sqlite_lock(path: Path, seconds: float, began: threading.Event) -> None:
    # A writer that takes no turn at the gate (retention, a migration, another tool).
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    began.set()
    time.sleep(seconds)
    db.execute("COMMIT")
    db.close()


async def test_gated_writers_wait_for_sqlites_lock_in_short_pauses_not_its_busy_handler(
    store: Store, tmp_path: Path
) -> None:
    # Whose turn it is may find SQLite's lock taken for the length of another writer's call:
    # its connection does not sleep in SQLite's busy handler (1, 2, 5 ... 100 ms between
    # tries) but tries again after the gate's pauses of 50-200 us, and writes once it is free.
    writer = store.writer._batches
    assert isinstance(writer, SqliteBatchWriter) and writer._db is not None
    assert writer._db.execute("PRAGMA busy_timeout").fetchone() == (0,)
    assert (
        await store.journal.apply(lambda conn: conn.exec_driver_sql("PRAGMA busy_timeout").scalar())
        == 0
    )
    began = threading.Event()
    holder = threading.Thread(
        target=_hold_sqlite_lock, args=(tmp_path / "gateway.db", SETTLE_SECONDS, began)
    )
    holder.start()
    began.wait(5)
    adding = asyncio.ensure_future(store.events.add(new_event("paused-1")))
    applying = asyncio.ensure_future(
        store.journal.apply(
            lambda conn: conn.exec_driver_sql("UPDATE event_status SET status = status")
        )
    )
    await asyncio.sleep(SETTLE_SECONDS / 2)
    assert not adding.done() and not applying.done(), "written while SQLite's lock was taken"
    stored = await asyncio.wait_for(adding, 10)
    await asyncio.wait_for(applying, 10)
    holder.join(5)
    assert (await store.events.get(stored.id)) is not None


def test_a_gated_writer_gives_up_on_sqlites_lock_after_the_wait(tmp_path: Path) -> None:
    # At the edge of the wait (10 s; 0.4 s here): a lock held past it fails the write with a
    # clear error, and nothing is written; a lock let go within it is waited for.
    import sqlite3

    from gateway.store.write_gate import begin_immediate

    path = tmp_path / "gateway.db"
    sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").close()
    gate = WriteGate(str(path), wait=0.4)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA busy_timeout=0")
    began = threading.Event()
    holder = threading.Thread(target=_hold_sqlite_lock, args=(path, 1.0, began))
    holder.start()
    began.wait(5)
    started = time.monotonic()
    with pytest.raises(
        StoreUnavailable, match=r"SQLite's write lock on .*gateway\.db stayed taken for 0\.4 s"
    ):
        begin_immediate(db, gate)
    assert time.monotonic() - started >= 0.4  # and before the holder let go: no transaction
    assert not db.in_transaction
    holder.join(5)
    began.clear()
    holder = threading.Thread(target=_hold_sqlite_lock, args=(path, 0.2, began))
    holder.start()
    began.wait(5)
    begin_immediate(db, gate)  # let go within the wait
    assert db.in_transaction
    db.execute("ROLLBACK")
    holder.join(5)
    db.close()
    gate.close()
