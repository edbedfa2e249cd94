"""The journal's rows on SQLite go to the DB-API prepared while the write gate is free
(`batching.Prepared`): they must be stored exactly as SQLAlchemy's executemany stores them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, func, insert, select, text
from sqlalchemy.dialects import sqlite

from gateway.store import Store, batching
from gateway.store import runs as runs_module
from gateway.store import steps as steps_module
from gateway.store.schema import runs, steps, thread_items
from gateway.store.status import RunStatus, StepStatus
from tests.test_store import routed_runs

NOW = datetime(2026, 12, 1, 16, 45, 1, 234567, tzinfo=UTC)


@pytest.fixture
async def two_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    for module in (steps_module, runs_module):
        monkeypatch.setattr(module, "now_utc", lambda: NOW)
    opened = []
    for name in ("prepared", "sqlalchemy"):
        store = Store(f"sqlite:///{tmp_path / name}.db")
        await store.open()
        opened.append(store)
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


async def _journal_rows(store: Store) -> list[Any]:
    [run_id] = await routed_runs(store, ["key-1"])
    # A model turn and a tool call (JSON, datetimes, a status enum, a float), usage added to
    # the run, thread items appended, the run ended: every statement a Bulk change sends.
    await store.steps.record(
        run_id,
        [
            (0, {"kind": "model", "model": "gpt-x", "status": StepStatus.SUCCEEDED,
                 "idempotency_key": "1.0.abcd",
                 "result": {"output": [{"type": "message", "text": "ünïcode"}]},
                 "input_tokens": 12, "output_tokens": 3, "cost": 0.00125, "duration_ms": 1.5}),
            (1, {"kind": "tool", "tool": "log.record", "arguments": {"message": "x", "n": [1, 2]},
                 "idempotency_key": "1.1.abcd", "status": StepStatus.SUCCEEDED, "result": None,
                 "call_id": "call_1", "started_at": datetime(2026, 12, 1, 16, 45, tzinfo=UTC)}),
        ],
        RunStatus.SUCCEEDED,
        None,
        usage=(12, 3, 0.00125),
        thread=("thread-1", [{"role": "user", "content": "hi"}, {"role": "assistant"}]),
    )  # fmt: skip

    def read(conn: Any) -> list[Any]:
        return [
            [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key))]
            for table in (steps, runs, thread_items)
        ]

    return await store.journal.apply(read)


async def test_prepared_rows_store_what_sqlalchemys_executemany_stores(
    two_stores: list[Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared_store, sqlalchemy_store = two_stores
    made: list[Any] = []
    real = batching.Prepared.of

    def seen(*args: Any) -> Any:
        made.append(result := real(*args))
        return result

    monkeypatch.setattr(batching.Prepared, "of", seen)
    prepared = await _journal_rows(prepared_store)
    assert len(made) == 4 and all(made), "INSERT_STEP, ADD_USAGE, INSERT_ITEM, END_RUN prepared"
    monkeypatch.setattr(batching.Prepared, "of", lambda *_: None)  # SQLAlchemy runs them all
    assert prepared == await _journal_rows(sqlalchemy_store)
    step_rows, run_rows, item_rows = prepared
    assert len(step_rows) == 2 and len(item_rows) == 2
    [run] = run_rows
    assert RunStatus.SUCCEEDED.value in run and 12 in run and 0.00125 in run


def test_a_statement_with_a_default_made_in_python_is_left_to_sqlalchemy() -> None:
    # A Python-side default is computed per row by SQLAlchemy's execution, not by a bind
    # processor: such a statement is not prepared, and goes through SQLAlchemy as before.
    table = Table(
        "t",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("at", DateTime, default=lambda: NOW),
        Column("n", Integer, server_default=func.abs(-1)),
    )
    dialect = sqlite.dialect(paramstyle="qmark")
    assert batching.Prepared.of(insert(table), ["id"], dialect) is None
    prepared = batching.Prepared.of(insert(table), ["id", "at"], dialect)
    assert prepared is not None and prepared.values({"id": 1, "at": NOW}) == (
        1,
        "2026-12-01 16:45:01.234567",
    )
    assert batching.Prepared.of(text("UPDATE t SET n = :n"), ["n"], dialect) is not None


async def test_statements_made_per_call_are_not_kept_past_the_limit(tmp_path: Path) -> None:
    # Bulk changes carry a handful of module-level statements; one built per call is compiled
    # each time once the journal keeps PREPARED_MAX of them, not kept for good.
    from sqlalchemy import bindparam, update

    from gateway.store.schema import event_status
    from tests.test_store import new_event

    store = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
    await store.open()
    try:
        stored = await store.events.add(new_event("made-per-call"))
        statuses = ["routed", "pending"]
        for n in range(batching.PREPARED_MAX + 3):
            statement = (
                update(event_status)
                .where(event_status.c.event_id == bindparam("b_id"))
                .values(status=bindparam("b_status"))
            )
            row = {"b_id": stored.id, "b_status": statuses[n % 2]}
            await store.journal.apply(batching.Bulk(((statement, row),)))
        assert len(store.journal._prepared) == batching.PREPARED_MAX
        event = await store.events.get(stored.id)
        assert event is not None and event.status == statuses[(batching.PREPARED_MAX + 2) % 2]
    finally:
        await store.close()
