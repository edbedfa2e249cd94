"""The step store: the journal of each run, written before each call and finished after it.

Ending a step may end its run, add to its usage and append to its thread, in the same commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, exists, insert, select, update

from gateway.store import threads
from gateway.store.abc import ThreadItems, Usage
from gateway.store.batching import Bulk
from gateway.store.part import Part, now_utc
from gateway.store.records import Step
from gateway.store.runs import END_RUN, end_run
from gateway.store.schema import runs, steps
from gateway.store.status import FINISHED, RunStatus, StepStatus

# Every column a step inserted whole may leave out, with the value it then gets: rows of one
# executemany must all name the same columns.
STEP_COLUMNS = {
    "kind": None,
    "tool": None,
    "arguments": None,
    "idempotency_key": None,
    "status": None,
    "result": None,
    "error": None,
    "attempt": 1,
    "duration_ms": None,
    "model": None,
    "call_id": None,
    "input_tokens": 0,
    "output_tokens": 0,
    "cost": 0.0,
    "decision": None,
    "decided_by": None,
    "decided_at": None,
    "reason": None,
    "arguments_digest": None,
    "approved_digest": None,
}
INSERT_STEP = insert(steps)
ADD_USAGE = (
    update(runs)
    .where(runs.c.id == bindparam("b_run_id"))
    .values(
        input_tokens=runs.c.input_tokens + bindparam("b_in"),
        output_tokens=runs.c.output_tokens + bindparam("b_out"),
        cost=runs.c.cost + bindparam("b_cost"),
    )
)


class Steps(Part):
    """`StepStore` on the `steps` table."""

    async def start(self, run_id: int, position: int, **values: Any) -> None:
        def change(conn: Connection) -> None:
            conn.execute(
                insert(steps).values(
                    run_id=run_id, position=position, started_at=now_utc(), **values
                )
            )

        await self.journal.apply(change)

    async def update(self, run_id: int, position: int, **values: Any) -> None:
        def change(conn: Connection) -> None:
            conn.execute(
                update(steps)
                .where(steps.c.run_id == run_id, steps.c.position == position)
                .values(**values)
            )

        await self.journal.apply(change)

    async def finish(
        self,
        run_id: int,
        position: int,
        step_values: dict[str, Any],
        run_status: RunStatus | None = None,
        run_error: str | None = None,
        *,
        new: bool = False,
        usage: Usage | None = None,
        thread: ThreadItems | None = None,
    ) -> None:
        if new:
            # Inserted whole after the call (no side effects, or a model turn): rows only.
            await self.record(
                run_id, [(position, step_values)], run_status, run_error, usage=usage, thread=thread
            )
            return

        def change(conn: Connection) -> None:
            now = now_utc()
            conn.execute(
                update(steps)
                .where(steps.c.run_id == run_id, steps.c.position == position)
                .values(finished_at=now, **step_values)
            )
            _end_run(conn, run_id, now, run_status, run_error, usage, thread)

        await self.journal.apply(change)

    async def record(
        self,
        run_id: int,
        new_steps: list[tuple[int, dict[str, Any]]],
        run_status: RunStatus | None = None,
        run_error: str | None = None,
        *,
        usage: Usage | None = None,
        thread: ThreadItems | None = None,
    ) -> None:
        # Prepared statements' rows only: the journal sends those of a whole batch (many runs'
        # turns) as one executemany each, where a statement built per call was compiled per
        # call (bench/assistants: most of the journal thread's time).
        now = now_utc()
        rows: list[tuple[Any, dict[str, Any]]] = [
            (INSERT_STEP, step_row(run_id, position, values, now)) for position, values in new_steps
        ]
        rows += run_rows(run_id, now, run_status, run_error, usage, thread)
        await self.journal.apply(Bulk(tuple(rows)))

    async def of_run(self, run_id: int) -> list[Step]:
        query = select(steps).where(steps.c.run_id == run_id).order_by(steps.c.position)
        return [Step.from_row(row) for row in await self._rows(query)]

    async def unclosed(
        self, opened: str, closed: str, *, since: datetime, ended_before: datetime, limit: int
    ) -> list[Step]:
        later = steps.alias("later")
        query = (
            select(steps)
            .join(runs, runs.c.id == steps.c.run_id)
            .where(
                steps.c.kind == "tool",  # ix_steps_kind_started_at bounds the scan
                steps.c.started_at >= since,
                steps.c.tool == opened,
                steps.c.status == StepStatus.SUCCEEDED,
                runs.c.status.in_(FINISHED),
                runs.c.finished_at < ended_before,
                ~exists().where(
                    later.c.run_id == steps.c.run_id,
                    later.c.tool == closed,
                    later.c.position > steps.c.position,
                ),
            )
            .order_by(steps.c.id)
            .limit(limit)
        )
        return [Step.from_row(row) for row in await self._rows(query)]

    async def get(self, step_id: int) -> Step | None:
        row = await self._first(select(steps).where(steps.c.id == step_id))
        return Step.from_row(row) if row else None

    async def awaiting(self, limit: int = 200) -> list[Step]:
        query = (
            select(steps)
            .where(steps.c.status == StepStatus.AWAITING_APPROVAL)
            .order_by(steps.c.id)
            .limit(limit)
        )
        return [Step.from_row(row) for row in await self._rows(query)]

    async def decide(
        self,
        step_id: int,
        decision: str,
        by: str,
        reason: str | None,
        approved_digest: str | None = None,
    ) -> Step | None:
        def change(conn: Connection) -> bool:
            result = conn.execute(
                update(steps)
                .where(steps.c.id == step_id, steps.c.status == StepStatus.AWAITING_APPROVAL)
                .values(
                    status=StepStatus.APPROVED if decision == "approved" else StepStatus.REJECTED,
                    decision=decision,
                    decided_by=by,
                    decided_at=now_utc(),
                    reason=reason,
                    approved_digest=approved_digest if decision == "approved" else None,
                )
            )
            return bool(result.rowcount)

        if not await self.journal.apply(change):
            return None
        return await self.get(step_id)


def step_row(
    run_id: int, position: int, step_values: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """A row of `INSERT_STEP`: every column named, so rows of many steps share a statement."""
    unknown = step_values.keys() - STEP_COLUMNS.keys() - {"started_at"}
    if unknown:
        raise ValueError(f"not columns of a step: {sorted(unknown)}")
    values = {**STEP_COLUMNS, **step_values}
    return {
        **values,
        "run_id": run_id,
        "position": position,
        "started_at": values.get("started_at", now),
        "finished_at": now,
    }


def run_rows(
    run_id: int,
    now: datetime,
    status: RunStatus | None,
    error: str | None,
    usage: Usage | None,
    thread: ThreadItems | None,
) -> list[tuple[Any, dict[str, Any]]]:
    """The run-level part of finishing steps, as prepared statements' rows: usage totals,
    thread memory, final status."""
    rows: list[tuple[Any, dict[str, Any]]] = []
    if usage is not None:
        rows.append(
            (
                ADD_USAGE,
                {"b_run_id": run_id, "b_in": usage[0], "b_out": usage[1], "b_cost": usage[2]},
            )
        )
    if thread is not None and thread[1]:
        rows += [
            (threads.INSERT_ITEM, row)
            for row in threads.item_rows(thread[0], run_id, thread[1], now)
        ]
    if status is not None:
        rows.append((END_RUN, end_run(run_id, status, error, now)))
    return rows


def _end_run(
    conn: Connection,
    run_id: int,
    now: datetime,
    status: RunStatus | None,
    error: str | None,
    usage: Usage | None,
    thread: ThreadItems | None,
) -> None:
    """`run_rows`, executed in the transaction of `conn`."""
    for statement, params in run_rows(run_id, now, status, error, usage, thread):
        conn.execute(statement, params)
