"""The store on every backend: one suite, run on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import SchemaMismatch
from gateway.store import NewEvent, NewRun, RunStatus, Store, Stored, database
from gateway.store.notify import Notifier
from gateway.store.runs import insert_runs
from tests.postgres import fresh_database


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


def new_event(delivery_id: str, source: str = "shop", body: bytes = b'{"id": 1}') -> NewEvent:
    return NewEvent(
        source=source,
        provider="shopify",
        type="orders/create",
        delivery_id=delivery_id,
        headers={"X-Shopify-Topic": "orders/create", "X-Other": "ünïcode"},
        body=body,
        received_at=datetime(2026, 11, 25, 12, 30, 15, 123456, tzinfo=UTC),
    )


async def routed_runs(store: Store, keys: list[str | None]) -> list[int]:
    """One event and one pending run per ordering key, in this order."""
    stored = await store.events.add(new_event(f"d-{len(keys)}-{keys}"))
    plan = [NewRun(event_id=stored.id, rule="r", kind="actions", ordering_key=k) for k in keys]
    return await store.runs.route(stored.id, plan, "routed")


# ---------------------------------------------------------------------- schema


async def test_migrations_bring_an_empty_database_to_the_head_revision(store_url: str) -> None:
    store = Store(store_url)
    try:
        with pytest.raises(SchemaMismatch):
            await store.open(migrate=False)  # an empty database is not a schema it knows
        await database.upgrade(store.write_engine)
        await database.upgrade(store.write_engine)  # idempotent
        assert await database.current_revision(store.engine) == database.head_revision()
        await store.open(migrate=False)
        assert await store.ping()
    finally:
        await store.close()


async def test_concurrent_upgrades_of_one_database_both_succeed(store_url: str) -> None:
    engines = [database.write_engine(*database.connect(store_url)) for _ in range(2)]
    try:
        await asyncio.gather(*(database.upgrade(engine) for engine in engines))
        assert await database.current_revision(engines[0]) == database.head_revision()
    finally:
        for engine in engines:
            await engine.dispose()


# ---------------------------------------------------------------------- events


async def test_added_event_is_stored_with_its_headers_body_and_time(store: Store) -> None:
    new = new_event("d1", body=b"\x00binary\xff")
    stored = await store.events.add(new)
    event = await store.events.get(stored.id)

    assert not stored.duplicate
    assert event is not None
    assert (event.source, event.delivery_id, event.status) == ("shop", "d1", "pending")
    assert event.headers == new.headers
    assert event.body == b"\x00binary\xff"
    assert event.received_at == new.received_at
    assert event.received_at.tzinfo is not None


async def test_an_event_settled_unmatched_is_stored_so_and_handed_to_nobody(store: Store) -> None:
    # The worker's rules take no event of this type: the writer stores it unmatched in the
    # commit that stores it, so routing it costs no commit of its own.
    handed: list[str] = []
    store.events.on_commit(lambda stored: handed.extend(s.event.delivery_id for s in stored))
    store.events.settle_unmatched(lambda new: new.delivery_id.startswith("nobody"))
    nobody, someone = await asyncio.gather(
        store.events.add(new_event("nobody-1")), store.events.add(new_event("someone-1"))
    )

    assert [e.status for e in await store.events.by_ids([nobody.id, someone.id])] == [
        "unmatched",
        "pending",
    ]
    assert [e.id for e in await store.events.pending()] == [someone.id]
    assert handed == ["someone-1"]


async def test_redelivered_event_is_stored_once(store: Store) -> None:
    first = await store.events.add(new_event("d1"))
    again = await store.events.add(new_event("d1"))

    assert again.duplicate and again.id == first.id
    assert await store.events.count() == 1


async def test_concurrent_duplicates_in_one_batch_are_stored_once(store: Store) -> None:
    news = [new_event(f"d{n % 7}") for n in range(60)] + [new_event("d0", source="other")]
    results = await asyncio.gather(*(store.events.add(new) for new in news))

    assert await store.events.count() == 8
    by_key: dict[tuple[str, str], set[int]] = {}
    for result in results:
        by_key.setdefault((result.event.source, result.event.delivery_id), set()).add(result.id)
    assert all(len(ids) == 1 for ids in by_key.values())
    assert sum(not r.duplicate for r in results) == 8


async def test_duplicates_in_batches_committed_side_by_side_are_stored_once(store: Store) -> None:
    # Staggered waves: on PostgreSQL several batches are in flight at once, and a delivery id
    # inserted by one is found (not stored again) by the others.
    async def wave(number: int) -> list[Stored]:
        await asyncio.sleep(number * 0.002)
        return await asyncio.gather(*(store.events.add(new_event(f"w{k % 5}")) for k in range(8)))

    results = [stored for wave_results in await asyncio.gather(*map(wave, range(12)))
               for stored in wave_results]  # fmt: skip

    assert await store.events.count() == 5
    ids = {r.event.delivery_id: r.id for r in results if not r.duplicate}
    assert len(ids) == 5 and sum(not r.duplicate for r in results) == 5
    assert all(r.id == ids[r.event.delivery_id] for r in results)


async def test_same_dedup_key_under_another_delivery_id_is_a_replay_of_the_first(
    store: Store,
) -> None:
    first = await store.events.add(replace(new_event("d1"), dedup_key="body-1"))
    again = await store.events.add(replace(new_event("d1"), dedup_key="body-1"))
    replay = await store.events.add(replace(new_event("d2"), dedup_key="body-1"))

    assert (again.id, again.duplicate, again.replayed) == (first.id, True, False)
    assert (replay.id, replay.duplicate, replay.replayed) == (first.id, True, True)
    assert replay.stored_delivery_id == "d1"
    assert await store.events.count() == 1


async def test_one_delivery_id_with_other_dedup_keys_is_stored_each_time(store: Store) -> None:
    results = await asyncio.gather(
        *(store.events.add(replace(new_event("d1"), dedup_key=f"body-{n}")) for n in range(3))
    )

    assert [r.duplicate for r in results] == [False, False, False]
    assert await store.events.count() == 3


async def test_replays_in_one_batch_name_the_delivery_id_stored_first(store: Store) -> None:
    results = await asyncio.gather(
        *(store.events.add(replace(new_event(f"d{n}"), dedup_key="body")) for n in range(5))
    )

    [stored] = [r for r in results if not r.duplicate]
    assert {r.stored_delivery_id for r in results if r.duplicate} == {stored.event.delivery_id}
    assert all(r.id == stored.id for r in results)


async def test_events_are_listed_newest_first_and_filtered(store: Store) -> None:
    ids = [(await store.events.add(new_event(f"d{n}", source=f"s{n % 2}"))).id for n in range(5)]
    await store.events.set_status(ids[0], "routed")

    assert [e.id for e in await store.events.find()] == ids[::-1]
    assert [e.id for e in await store.events.find(limit=2)] == ids[:2:-1]
    assert [e.id for e in await store.events.find(source="s1")] == [ids[3], ids[1]]
    assert [e.id for e in await store.events.find(status="routed")] == [ids[0]]
    assert [e.id for e in await store.events.pending()] == ids[1:]


# ---------------------------------------------------------------------- routing


async def test_routing_an_event_creates_its_runs_once(store: Store) -> None:
    stored = await store.events.add(new_event("d1"))
    plan = [
        NewRun(event_id=stored.id, rule="a", kind="actions", ordering_key="k"),
        NewRun(event_id=stored.id, rule="b", kind="assistant", thread_key="t", status="failed"),
    ]
    run_ids = await store.runs.route(stored.id, plan, "routed")
    again = await store.runs.route(stored.id, plan, "routed")

    assert again == []
    event = await store.events.get(stored.id)
    assert event is not None and event.status == "routed"
    runs = {run.id: run for run in await store.runs.find(event_id=stored.id)}
    assert set(runs) == set(run_ids)
    first, second = (runs[i] for i in run_ids)
    assert (first.rule, first.status, first.ordering_key) == ("a", "pending", "k")
    assert (second.status, second.thread_key) == ("failed", "t")
    assert second.finished_at is not None and second.created_at.tzinfo is not None


async def test_runs_are_found_by_status_and_creation_time_oldest_first_if_asked(
    store: Store,
) -> None:
    # What the gateway.runs tool asks: dead runs created in [since, until), oldest first.
    before = datetime.now(UTC)
    dead = await routed_runs(store, [None, None, None])
    for run_id in dead:
        await store.runs.finish(run_id, RunStatus.DEAD, "gave up")
    [alive] = await routed_runs(store, [None])
    after = datetime.now(UTC) + timedelta(seconds=1)

    found = await store.runs.find(status="dead", since=before, until=after, oldest_first=True)
    assert [r.id for r in found] == dead
    assert [r.id for r in await store.runs.find(status="dead", since=before)] == dead[::-1]
    assert [r.id for r in await store.runs.find(since=before, limit=2)] == [alive, dead[2]]
    assert await store.runs.find(status="dead", since=after) == []
    assert await store.runs.find(status="dead", since=before, until=before) == []


# ---------------------------------------------------------------------- claiming


async def test_claim_takes_one_run_per_ordering_key_in_arrival_order(store: Store) -> None:
    a1, b1, a2, free, a3 = await routed_runs(store, ["a", "b", "a", None, "a"])

    claimed = await store.runs.claim("w1", 10, 60)
    assert [r.id for r in claimed] == [a1, b1, free]
    assert all(r.status == "running" and r.attempt == 1 for r in claimed)
    assert await store.runs.claim("w1", 10, 60) == []

    await store.runs.finish(a1, "succeeded")
    assert [r.id for r in await store.runs.claim("w2", 10, 60)] == [a2]
    await store.runs.finish(a2, "failed", "boom")
    assert [r.id for r in await store.runs.claim("w2", 10, 60)] == [a3]


async def test_a_replica_waits_for_another_replicas_uncommitted_run_of_the_same_key(
    postgres_url: str,
) -> None:
    # Two replicas routing events of one key at once: the later insert must not commit (and
    # be claimed) ahead of an earlier id that is not committed yet, or runs of the key would
    # run out of order (seen in the three-replica test).
    first_replica, second_replica = Store(postgres_url), Store(postgres_url)
    await first_replica.open()
    await second_replica.open()
    try:
        one = await first_replica.events.add(new_event("key-1"))
        two = await first_replica.events.add(new_event("key-2"))
        plan = [NewRun(event_id=two.id, rule="r", kind="actions", ordering_key="k")]
        async with first_replica.engine.begin() as conn:  # a routing transaction, still open
            [first] = await conn.run_sync(
                insert_runs, [NewRun(event_id=one.id, rule="r", kind="actions", ordering_key="k")]
            )
            second = asyncio.create_task(second_replica.runs.route(two.id, plan, "routed"))
            await asyncio.sleep(0.5)
            assert not second.done(), "a run of the key was inserted beside an uncommitted one"
        [second_id] = await asyncio.wait_for(second, 10)
        assert second_id > first
        assert [r.id for r in await second_replica.runs.claim("w", 10, 60)] == [first]
    finally:
        await first_replica.close()
        await second_replica.close()


async def test_concurrent_claimers_never_get_the_same_run(store_url: str, store: Store) -> None:
    total = 120
    stored = await store.events.add(new_event("d1"))
    plan = [NewRun(event_id=stored.id, rule="r", kind="actions") for _ in range(total)]
    await store.runs.route(stored.id, plan, "routed")
    other = Store(store_url)
    await other.open(migrate=False)

    async def drain(replica: Store, owner: str) -> list[int]:
        taken: list[int] = []
        while batch := await replica.runs.claim(owner, 7, 60):
            taken += [run.id for run in batch]
        return taken

    try:
        results = await asyncio.gather(
            *(drain(replica, f"w{n}") for n, replica in enumerate([store, other, store, other]))
        )
    finally:
        await other.close()
    claimed = [run_id for taken in results for run_id in taken]
    assert len(claimed) == len(set(claimed)) == total


async def test_expired_lease_makes_a_running_run_claimable_again(store: Store) -> None:
    [run_id] = await routed_runs(store, ["k"])
    # A lease long enough that a loaded database answers the next claim within it.
    [held] = await store.runs.claim("dead-replica", 1, lease=1.0)
    assert await store.runs.claim("alive", 1, 60) == []  # its lease still holds

    await asyncio.sleep(1.2)
    [taken] = await store.runs.claim("alive", 1, 60)

    assert taken.id == held.id == run_id
    assert taken.attempt == 2
    assert taken.started_at == held.started_at


async def test_renewed_lease_keeps_the_run(store: Store) -> None:
    await routed_runs(store, [None])
    [held] = await store.runs.claim("w1", 1, lease=0.3)
    await store.runs.renew("w1", [held.id], 60)
    await asyncio.sleep(0.4)

    assert await store.runs.claim("w2", 1, 60) == []


async def test_retry_later_waits_until_due(store: Store) -> None:
    [run_id] = await routed_runs(store, [None])
    await store.runs.claim("w1", 1, 60)
    at = datetime.now(UTC) + timedelta(seconds=0.3)
    await store.runs.retry_later(run_id, at, "503")

    assert await store.runs.claim("w1", 1, 60) == []
    due = await store.runs.next_due()
    assert due is not None and abs((due - at).total_seconds()) < 0.001
    await asyncio.sleep(0.4)
    [again] = await store.runs.claim("w1", 1, 60)
    assert (again.id, again.attempt, again.error) == (run_id, 2, "503")


# ---------------------------------------------------------------------- steps


async def test_steps_of_many_runs_recorded_together_keep_each_runs_usage_and_thread(
    store: Store,
) -> None:
    run_ids = await routed_runs(store, [None, None, None])
    await store.runs.claim("w1", 3, 60)

    def turn(n: int) -> dict[str, object]:
        return {"kind": "model", "idempotency_key": f"k{n}", "status": "succeeded"}

    # At once: the journal commits them in one batch, one executemany per statement.
    await asyncio.gather(
        *(
            store.steps.record(
                run_id,
                [(0, turn(n)), (1, {**turn(n + 10), "model": f"m{n}"})],
                RunStatus.SUCCEEDED if n else None,
                usage=(n + 1, 2 * n, 0.5 * n),
                thread=(f"t{n}", [{"n": n}, {"n": n, "then": True}]),
            )
            for n, run_id in enumerate(run_ids)
        )
    )

    for n, run_id in enumerate(run_ids):
        run = await store.runs.get(run_id)
        assert run is not None
        assert (run.input_tokens, run.output_tokens, run.cost) == (n + 1, 2 * n, 0.5 * n)
        assert run.status == ("succeeded" if n else "running")
        steps = await store.steps.of_run(run_id)
        assert [(s.position, s.idempotency_key, s.model) for s in steps] == [
            (0, f"k{n}", None),
            (1, f"k{n + 10}", f"m{n}"),
        ]
        assert await store.threads.items(f"t{n}") == [{"n": n}, {"n": n, "then": True}]


async def test_recording_a_step_with_a_value_that_is_no_column_names_it(store: Store) -> None:
    [run_id] = await routed_runs(store, [None])

    with pytest.raises(ValueError, match="colour"):
        await store.steps.record(run_id, [(0, {"status": "succeeded", "colour": "red"})])
    assert await store.steps.of_run(run_id) == []


async def test_started_step_is_finished_with_its_run_in_one_commit(store: Store) -> None:
    [run_id] = await routed_runs(store, [None])
    await store.runs.claim("w1", 1, 60)
    arguments = {"project": "OPS", "labels": ["a", "ü"], "n": 1.5}
    await store.steps.start(
        run_id,
        0,
        kind="tool",
        tool="jira.create_issue",
        arguments=arguments,
        idempotency_key=f"{run_id}.0.x",
        status="started",
    )
    [started] = await store.steps.of_run(run_id)
    assert (started.status, started.arguments, started.finished_at) == ("started", arguments, None)

    await store.steps.finish(
        run_id,
        0,
        {"status": "succeeded", "result": {"key": "OPS-1"}, "duration_ms": 3.5},
        "succeeded",
        usage=(10, 5, 0.25),
        thread=("t1", [{"role": "user", "content": "hi"}]),
    )
    await store.steps.finish(
        run_id,
        1,
        {"kind": "model", "idempotency_key": f"{run_id}.1.x", "status": "succeeded"},
        new=True,
    )

    first, second = await store.steps.of_run(run_id)
    assert (first.status, first.result, first.duration_ms) == ("succeeded", {"key": "OPS-1"}, 3.5)
    assert first.finished_at is not None and first.finished_at >= first.started_at
    assert (second.position, second.kind) == (1, "model")
    run = await store.runs.get(run_id)
    assert run is not None
    assert (run.status, run.input_tokens, run.output_tokens, run.cost) == ("succeeded", 10, 5, 0.25)
    assert await store.threads.items("t1") == [{"role": "user", "content": "hi"}]
    assert await store.threads.items("t1", before_run=run_id) == []


async def test_requeue_puts_a_finished_run_back_but_never_a_running_one(store: Store) -> None:
    [run_id] = await routed_runs(store, [None])
    await store.runs.claim("w1", 1, 60)
    assert await store.runs.requeue(run_id, reset_attempts=True) is False

    await store.runs.finish(run_id, "dead", "gave up")
    assert await store.runs.requeue(run_id, reset_attempts=True) is True

    run = await store.runs.get(run_id)
    assert run is not None
    assert (run.status, run.attempt, run.finished_at) == ("pending", 0, None)
    assert [r.id for r in await store.runs.claim("w2", 1, 60)] == [run_id]


async def test_decision_on_a_step_awaiting_approval_is_taken_once(store: Store) -> None:
    [run_id] = await routed_runs(store, [None])
    await store.steps.start(
        run_id,
        0,
        kind="tool",
        tool="email.send",
        arguments={"to": "a@example.com"},
        idempotency_key=f"{run_id}.0.y",
        status="awaiting_approval",
    )
    await store.runs.pause(run_id, "awaiting_approval")
    [step] = await store.steps.of_run(run_id)

    decided = await store.steps.decide(step.id, "approved", "alice", "looks right")
    again = await store.steps.decide(step.id, "rejected", "bob", None)

    assert decided is not None
    assert (decided.status, decided.decision) == ("approved", "approved")
    assert (decided.decided_by, decided.reason) == ("alice", "looks right")
    assert again is None
    stats = await store.runs.queue_stats()
    assert stats["approvals"][0] == 1
    assert stats["approvals"][1] is not None and stats["approvals"][1].tzinfo is not None


# ---------------------------------------------------------------------- LISTEN/NOTIFY


async def test_notify_from_one_replica_wakes_the_other(postgres_url: str) -> None:
    sender, listener = Notifier(postgres_url), Notifier(postgres_url)
    woken = asyncio.Event()
    listener.start(woken.set)
    try:
        await asyncio.wait_for(listener.listening(), 5)
        woken.clear()  # (re)connecting wakes the callback once: work may have been missed
        await sender.notify()
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        await listener.stop()
        await sender.stop()


async def test_listener_reconnects_after_its_connection_is_killed(postgres_url: str) -> None:
    sender, listener = Notifier(postgres_url), Notifier(postgres_url)
    woken = asyncio.Event()
    listener.start(woken.set)
    try:
        pid = await asyncio.wait_for(listener.listening(), 5)
        admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        new_pid = await asyncio.wait_for(listener.listening(other_than=pid), 10)
        assert new_pid != pid
        woken.clear()
        await sender.notify()
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        await listener.stop()
        await sender.stop()


def counting_pings(engine: AsyncEngine) -> list[int]:
    """One entry per ping of `engine`'s pool (the dialect's own ping, as pool_pre_ping used)."""
    dialect = engine.sync_engine.dialect
    pings: list[int] = []
    ping = dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one())


async def test_a_pooled_connection_is_pinged_only_after_idling(postgres_url: str) -> None:
    """No ping (three round trips) for a connection in steady use; one for a connection idle
    past the threshold, in case its peer vanished without closing it."""
    engine, _ = database.connect(postgres_url, ping_idle_after=1.0)
    pings = counting_pings(engine)
    try:
        first = await backend_pid(engine)
        assert {await backend_pid(engine) for _ in range(20)} == {first}
        assert pings == []
        await asyncio.sleep(1.1)
        assert await backend_pid(engine) == first
        assert pings == [1]
    finally:
        await engine.dispose()


async def test_a_pooled_connection_the_server_ended_is_replaced_without_a_ping(
    postgres_url: str,
) -> None:
    """A connection whose backend ended (a restart, an idle timeout, pg_terminate_backend) is
    known closed to asyncpg: the pool replaces it before anyone runs a query on it."""
    engine, _ = database.connect(postgres_url, ping_idle_after=3600)  # never idle long enough
    pings = counting_pings(engine)
    admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    try:
        first = await backend_pid(engine)
        await admin.execute("SELECT pg_terminate_backend($1)", first)
        for _ in range(100):  # until the backend has exited, its socket closed
            if not await admin.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", first):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)  # the event loop reads the connection's end
        assert await backend_pid(engine) != first  # no error: a live connection
        assert pings == []
    finally:
        await admin.close()
        await engine.dispose()


def test_a_sqlite_batch_is_written_in_few_statement_shapes() -> None:
    """Each size of a batch was its own prepared statement, all kept (~3 MB after a load):
    a batch is now written in pieces of 2^k rows, contiguous, in order, at most 9 of them."""
    from gateway.store.sqlite_values import chunks

    sizes: set[int] = set()
    for count in range(501):  # the ingest writer's largest batch is 500
        pieces = chunks(count)
        assert [start for start, _ in pieces] == [
            sum(s for _, s in pieces[:i]) for i in range(len(pieces))
        ]
        assert sum(size for _, size in pieces) == count and len(pieces) <= 9
        sizes.update(size for _, size in pieces)
    assert sizes == {1, 2, 4, 8, 16, 32, 64, 128, 256}


def test_a_store_behind_is_upgraded_apart_and_one_at_the_head_is_left_alone(
    tmp_path: Path,
) -> None:
    """`gateway serve`'s upgrade in a child process (Alembic stays out of the server)."""
    url = f"sqlite:///{tmp_path / 'apart.db'}"
    assert database.upgrade_apart(url)  # a new file: the child migrated it
    with sqlite3.connect(tmp_path / "apart.db") as db:
        [(revision,)] = db.execute("SELECT version_num FROM alembic_version").fetchall()
    assert revision == database.file_head()
    assert database.upgrade_apart(url)  # at the head: nothing to do


def test_an_unreachable_store_is_left_to_the_in_process_upgrade_at_once() -> None:
    started = time.monotonic()
    assert not database.upgrade_apart("postgresql://nobody@127.0.0.1:9/none")
    assert time.monotonic() - started < 10


async def test_sqlite_inserts_a_page_of_runs_in_a_few_statements(tmp_path: Path) -> None:
    # SQLAlchemy sent a row at a time when RETURNING's order had to follow the parameters:
    # 29 INSERTs per journal commit under bench/sustain. Now one per piece of 2^k rows, and
    # each id still belongs to the run given at its place.
    from sqlalchemy import event

    store = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
    await store.open()
    try:
        stored = await store.events.add(new_event("runs-in-pieces"))
        inserts: list[str] = []

        def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            if statement.startswith("INSERT INTO runs"):
                inserts.append(statement)

        assert store.journal._sync is not None
        event.listen(store.journal._sync, "before_cursor_execute", seen)
        plan = [
            NewRun(event_id=stored.id, rule=f"rule-{n}", kind="actions", ordering_key=f"k{n % 3}")
            for n in range(37)
        ]
        ids = await store.runs.add(plan)
        assert len(inserts) == 3, "37 runs: pieces of 32, 4 and 1 rows"
        assert ids == sorted(ids) and len(set(ids)) == 37
        for run_id, new in zip(ids, plan, strict=True):
            run = await store.runs.get(run_id)
            assert run is not None
            assert (run.rule, run.ordering_key) == (new.rule, new.ordering_key)
            assert run.status == "pending"
            assert run.created_at.tzinfo is not None
    finally:
        await store.close()
