"""Taking claimed runs: on SQLite one UPDATE ... RETURNING through the DB-API, elsewhere
SQLAlchemy's UPDATE and SELECT. Both must change the same rows the same way and give the
same `Run`s (the worker skips the journal of a fresh run, resumes the rest from it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, text

from gateway.store import Store
from gateway.store import claim as claiming
from gateway.store.records import Run
from gateway.store.schema import runs
from tests.test_plan import store as store  # the fixture: a store on a fresh SQLite file
from tests.test_store import routed_runs

NOW = datetime(2026, 12, 1, 16, 30, 0, 123456, tzinfo=UTC)
EXPIRES = NOW + timedelta(seconds=30)

Take = Callable[[Connection, claiming.Taking], list[Run]]


async def _taken_by(store: Store, take: Take, ids: list[int], fresh: set[int]) -> Any:
    """The runs `take` returns and the rows it left, in a transaction rolled back after."""

    def change(conn: Connection) -> Any:
        outer = conn.begin_nested()  # the journal's transaction stays as it was
        try:
            taken = take(conn, claiming.Taking(ids, fresh, "worker-1", NOW, EXPIRES))
            rows = [tuple(row) for row in conn.execute(select(runs).order_by(runs.c.id))]
        finally:
            outer.rollback()
        return taken, rows

    return await store.journal.apply(change)


async def test_sqlites_one_statement_takes_runs_as_sqlalchemys_two_do(store: Store) -> None:
    ids = await routed_runs(store, [None, "key-a", None, "key-b", None])
    fresh_one, keyed, retried, waiting, spent = ids
    earlier = NOW - timedelta(minutes=5)
    # Every column a claim reads or writes, in the states runs are claimed in: never started;
    # an ordering key; a retry (started before, failures since, an error, tokens spent, a
    # thread); a run parked by an open circuit; a lease that expired mid-run.
    await store.journal.apply(
        lambda conn: [
            conn.execute(
                runs.update().where(runs.c.id == run_id).values(**values)
            )
            for run_id, values in [
                (retried, {"attempt": 2, "started_at": earlier, "next_attempt_at": earlier,
                           "retry_since": earlier, "error": "jira: 503", "thread_key": "t-1",
                           "input_tokens": 120, "output_tokens": 45, "cost": 0.0125}),
                (waiting, {"status": "waiting", "attempt": 1, "started_at": earlier,
                           "next_attempt_at": earlier}),
                (spent, {"status": "running", "attempt": 1, "started_at": earlier,
                         "lease_owner": "worker-0", "lease_expires_at": earlier}),
            ]
        ]
    )  # fmt: skip
    fresh = {fresh_one, keyed}

    sqlite_runs, sqlite_rows = await _taken_by(store, claiming._take_sqlite, ids, fresh)
    core_runs, core_rows = await _taken_by(store, claiming._take_core, ids, fresh)

    assert sqlite_runs == core_runs
    assert sqlite_rows == core_rows
    assert [run.id for run in sqlite_runs] == ids
    assert [run.fresh for run in sqlite_runs] == [True, True, False, False, False]
    by_id = {run.id: run for run in sqlite_runs}
    assert all(run.status == "running" for run in sqlite_runs)
    assert by_id[fresh_one].started_at == NOW and by_id[fresh_one].attempt == 1
    assert by_id[retried].started_at == earlier and by_id[retried].attempt == 3
    assert by_id[retried].retry_since == earlier and by_id[retried].cost == 0.0125
    assert by_id[keyed].ordering_key == "key-a" and by_id[keyed].created_at.tzinfo is UTC
    leases = {row[0]: row[9:11] for row in sqlite_rows}  # lease_owner, lease_expires_at
    assert leases[spent] == ("worker-1", EXPIRES.replace(tzinfo=None))


async def test_a_claim_on_sqlite_is_one_update_and_no_select_of_the_runs(store: Store) -> None:
    # TAKE_RUNS, SELECT_RUNS and Run.from_row over SQLAlchemy's rows: 720 us per claim of 33
    # runs; one UPDATE ... RETURNING read straight into `Run`s: 400 us.
    ids = await routed_runs(store, [None] * 33)
    statements: list[str] = []

    def claim(conn: Connection) -> list[Run]:
        raw = conn.connection.dbapi_connection
        raw.set_trace_callback(statements.append)  # type: ignore[union-attr]
        try:
            return claiming.take(conn, claiming.claimable(store.dialect), "w", 64, 30.0)
        finally:
            raw.set_trace_callback(None)  # type: ignore[union-attr]

    taken = await store.journal.apply(claim)
    assert [run.id for run in taken] == ids and all(run.fresh for run in taken)
    writes = [sql for sql in statements if not sql.lstrip().upper().startswith("SELECT")]
    assert len(writes) == 1 and writes[0].startswith("UPDATE runs SET status")
    whole_rows_read = [sql for sql in statements if "runs.rule" in sql]  # SELECT_RUNS
    assert whole_rows_read == []
    count = await store.journal.apply(
        lambda conn: conn.execute(
            text("SELECT count(*) FROM runs WHERE status = 'running' AND lease_owner = 'w'")
        ).scalar()
    )
    assert count == 33
