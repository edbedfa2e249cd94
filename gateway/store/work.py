"""Runs and steps in the store: routing events into runs, claiming them, journaling each call.

Writes from many concurrent runs are group-committed by one `Journal` task: every caller
awaits the commit of its own change, and a burst of them shares one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import (
    Connection,
    Row,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import aliased

from gateway.store.batching import Bulk, Journal
from gateway.store.database import Dialect
from gateway.store.records import Event, NewRun, Run, Step
from gateway.store.schema import UNFINISHED, events, runs, steps, thread_items
from gateway.store.status import FINISHED, EventStatus, RunStatus, StepStatus

log = structlog.get_logger(__name__)
T = TypeVar("T")
Change = Callable[[Connection], Any]


def now_utc() -> datetime:
    return datetime.now(UTC)


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
INSERT_RUNS = insert(runs).returning(runs.c.id, sort_by_parameter_order=True)
MARK_EVENT = (
    update(events).where(events.c.id == bindparam("b_id")).values(status=bindparam("b_status"))
)
# Transaction-scoped advisory locks on ordering keys (two-int form, namespace "gate"), taken
# in one order so that two transactions never wait for each other's keys.
LOCK_KEYS = text(
    "SELECT pg_advisory_xact_lock(1734440037, h)"
    " FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(CAST(:b_keys AS text[])) AS k"
    " ORDER BY h) AS ordered"
)

# Claiming. Built once: building these statements cost more than running them (bench/drain).
# A run is claimable when no earlier run with its ordering key is unfinished. Two queries,
# each walking ix_runs_status_id in id order: one over both statuses (an OR) made SQLite
# collect and sort every pending run to return the first few.
_EARLIER = aliased(runs, name="earlier")
_NOW = bindparam("b_now", type_=runs.c.started_at.type)
# The first unfinished run of each key, computed once per claim from the partial index
# ix_runs_unfinished_key (unfinished runs only). A correlated "no earlier unfinished run of
# this key" test per waiting run made PostgreSQL walk the primary key past every finished run,
# for every waiting run: 1.5 s per claim with 3,000 runs waiting in 20 keys, 5 ms this way.
_HEADS = (
    select(func.min(_EARLIER.c.id))
    .where(_EARLIER.c.ordering_key.is_not(None), text(f"earlier.{UNFINISHED.text}"))
    .group_by(_EARLIER.c.ordering_key)
)
_KEY_FREE = or_(runs.c.ordering_key.is_(None), runs.c.id.in_(_HEADS))
CLAIM_EXPIRED = (
    select(runs.c.id, runs.c.started_at)
    .where(runs.c.status == RunStatus.RUNNING, runs.c.lease_expires_at < _NOW, _KEY_FREE)
    .order_by(runs.c.id)
    .limit(bindparam("b_limit"))
)
CLAIM_DUE = (
    select(runs.c.id, runs.c.started_at)
    .where(
        runs.c.status == RunStatus.PENDING,
        or_(runs.c.next_attempt_at.is_(None), runs.c.next_attempt_at <= _NOW),
        _KEY_FREE,
    )
    .order_by(runs.c.id)
    .limit(bindparam("b_limit"))
)
TAKE_RUNS = (
    update(runs)
    .where(runs.c.id.in_(bindparam("b_ids", expanding=True)))
    .values(
        status=RunStatus.RUNNING,
        lease_owner=bindparam("b_owner"),
        lease_expires_at=bindparam("b_expires", type_=runs.c.lease_expires_at.type),
        attempt=runs.c.attempt + 1,
        started_at=func.coalesce(runs.c.started_at, _NOW),
    )
)
SELECT_RUNS = (
    select(runs).where(runs.c.id.in_(bindparam("b_ids", expanding=True))).order_by(runs.c.id)
)
END_RUN = (
    update(runs)
    .where(runs.c.id == bindparam("b_run_id"))
    .values(
        status=bindparam("b_status"),
        error=bindparam("b_error"),
        finished_at=bindparam("b_finished_at"),
        lease_owner=None,
        lease_expires_at=None,
        next_attempt_at=None,
    )
)


class WorkStore:
    """Queries and changes on runs and steps. Reads use `engine`; writes go through the journal."""

    def __init__(self, engine: AsyncEngine, write_engine: AsyncEngine, dialect: Dialect) -> None:
        self.engine = engine
        self.write_engine = write_engine
        self.dialect = dialect
        self.journal = Journal(write_engine, dialect)
        # Runs whose worker died (lease expired) first, then runs that are due.
        self._claimable = [CLAIM_EXPIRED, CLAIM_DUE]
        if dialect.skip_locked:
            self._claimable = [
                q.with_for_update(skip_locked=True, of=runs) for q in self._claimable
            ]

    # ------------------------------------------------------------------ routing

    async def pending_events(self, limit: int = 500) -> list[Event]:
        query = (
            select(events)
            .where(events.c.status == EventStatus.PENDING)
            .order_by(events.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [Event.from_row(row) for row in await conn.execute(query)]

    async def route(self, event_id: int, new_runs: Sequence[NewRun], status: str) -> list[int]:
        """Create the runs an event matched and mark it routed (or unmatched), atomically."""
        return (await self.route_many([(event_id, new_runs, status)]))[0]

    async def route_many(
        self, routes: Sequence[tuple[int, Sequence[NewRun], str]]
    ) -> list[list[int]]:
        """`route` for a page of events in one commit: each event's new run ids, or [] for an
        event someone else routed first (another worker, or a replay race)."""
        created, _ = await self.route_and_claim(routes, None)
        return created

    async def route_and_claim(
        self,
        routes: Sequence[tuple[int, Sequence[NewRun], str]],
        claim: tuple[str, int, float] | None,
    ) -> tuple[list[list[int]], list[Run]]:
        """`route_many`, then, in the same commit, `claim(owner, limit, lease)`: a worker
        with free slots takes the runs it just created without another round trip."""

        def change(conn: Connection) -> tuple[list[list[int]], list[Run]]:
            ids = [event_id for event_id, _, _ in routes]
            query = select(events.c.id).where(
                events.c.id.in_(ids), events.c.status == EventStatus.PENDING
            )
            if self.dialect.skip_locked:
                # Replicas routing the same page: each event goes to whoever locks it first;
                # the others skip it. (SQLite's IMMEDIATE transactions already serialise.)
                query = query.with_for_update(skip_locked=True)
            still = {row.id for row in conn.execute(query)}
            mine = [(e, planned, status) for e, planned, status in routes if e in still]
            if mine:
                conn.execute(MARK_EVENT, [{"b_id": e, "b_status": status} for e, _, status in mine])
            created = _insert_runs(conn, [new for _, planned, _ in mine for new in planned])
            by_event: dict[int, list[int]] = {}
            for new, run_id in zip(
                [new for _, planned, _ in mine for new in planned], created, strict=True
            ):
                by_event.setdefault(new.event_id, []).append(run_id)
            claimed = self._claim(conn, *claim) if claim is not None and claim[1] > 0 else []
            return [by_event.get(event_id, []) for event_id in ids], claimed

        return await self.journal.apply(change)

    async def add_runs(self, new_runs: Sequence[NewRun]) -> list[int]:
        """New runs for an event that is already routed (replay)."""

        def change(conn: Connection) -> list[int]:
            return _insert_runs(conn, new_runs)

        return await self.journal.apply(change)

    # ------------------------------------------------------------------ claiming

    async def claim(self, owner: str, limit: int, lease: float) -> list[Run]:
        """Take up to `limit` runs that are due, whose ordering key is free, under a lease.

        A run is claimable when it is pending and due, or running under an expired lease (its
        worker died). A run waits while an earlier run with its ordering key is unfinished.
        """
        if limit <= 0:
            return []
        return await self.journal.apply(lambda conn: self._claim(conn, owner, limit, lease))

    def _claim(self, conn: Connection, owner: str, limit: int, lease: float) -> list[Run]:
        now = now_utc()
        found: list[Row[Any]] = []
        for query in self._claimable:
            params = {"b_now": now, "b_limit": limit - len(found)}
            found += conn.execute(query, params)
            if len(found) >= limit:
                break
        ids = [row.id for row in found]
        if not ids:
            return []
        # Never started before: no journal to read back (what the worker skips).
        fresh = {row.id for row in found if row.started_at is None}
        expires = now + timedelta(seconds=lease)
        params = {"b_ids": ids, "b_owner": owner, "b_now": now, "b_expires": expires}
        conn.execute(TAKE_RUNS, params)
        rows = conn.execute(SELECT_RUNS, {"b_ids": ids})
        return [replace(Run.from_row(row), fresh=row.id in fresh) for row in rows]

    async def renew(self, owner: str, run_ids: Sequence[int], lease: float) -> None:
        if not run_ids:
            return

        def change(conn: Connection) -> None:
            conn.execute(
                update(runs)
                .where(runs.c.id.in_(list(run_ids)), runs.c.lease_owner == owner)
                .values(lease_expires_at=now_utc() + timedelta(seconds=lease))
            )

        await self.journal.apply(change)

    async def expire_leases(self) -> int:
        """Make every running run claimable now (SQLite at start: no other worker can exist)."""

        def change(conn: Connection) -> int:
            result = conn.execute(
                update(runs)
                .where(runs.c.status == RunStatus.RUNNING)
                .values(lease_expires_at=now_utc())
            )
            return int(result.rowcount)

        return await self.journal.apply(change)

    async def next_due(self) -> datetime | None:
        """When the earliest waiting retry becomes due (for the worker's timer)."""
        query = select(func.min(runs.c.next_attempt_at)).where(
            runs.c.status == RunStatus.PENDING, runs.c.next_attempt_at.is_not(None)
        )
        async with self.engine.connect() as conn:
            value: datetime | None = (await conn.execute(query)).scalar_one_or_none()
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    # ------------------------------------------------------------------ finishing runs

    async def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        def change(conn: Connection) -> None:
            _end_run(conn, run_id, now_utc(), status, error, None, None)

        await self.journal.apply(change)

    async def retry_later(self, run_id: int, at: datetime, error: str) -> None:
        def change(conn: Connection) -> None:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    status=RunStatus.PENDING,
                    error=error,
                    next_attempt_at=at,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )

        await self.journal.apply(change)

    async def pause_run(self, run_id: int, status: str) -> None:
        """Leave a run waiting for someone (awaiting_approval): no lease, no retry timer."""

        def change(conn: Connection) -> None:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(status=status, lease_owner=None, lease_expires_at=None)
            )

        await self.journal.apply(change)

    async def requeue(self, run_id: int, *, reset_attempts: bool) -> bool:
        """Put a run back to pending now (operator retry, or an approval decision)."""

        def change(conn: Connection) -> bool:
            values: dict[str, Any] = {
                "status": RunStatus.PENDING,
                "next_attempt_at": None,
                "finished_at": None,
                "lease_owner": None,
                "lease_expires_at": None,
            }
            if reset_attempts:
                values["attempt"] = 0
            result = conn.execute(
                update(runs)
                .where(runs.c.id == run_id, runs.c.status != RunStatus.RUNNING)
                .values(values)
            )
            return bool(result.rowcount)

        return await self.journal.apply(change)

    async def add_usage(
        self, run_id: int, input_tokens: int, output_tokens: int, cost: float
    ) -> None:
        def change(conn: Connection) -> None:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    input_tokens=runs.c.input_tokens + input_tokens,
                    output_tokens=runs.c.output_tokens + output_tokens,
                    cost=runs.c.cost + cost,
                )
            )

        await self.journal.apply(change)

    # ------------------------------------------------------------------ steps

    async def start_step(self, run_id: int, position: int, **values: Any) -> None:
        """Record a step as started (its outcome unknown) before the call it stands for."""

        def change(conn: Connection) -> None:
            conn.execute(
                insert(steps).values(
                    run_id=run_id, position=position, started_at=now_utc(), **values
                )
            )

        await self.journal.apply(change)

    async def update_step(self, run_id: int, position: int, **values: Any) -> None:
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
        run_status: str | None = None,
        run_error: str | None = None,
        *,
        new: bool = False,
        usage: tuple[int, int, float] | None = None,
        thread: tuple[str, list[Any]] | None = None,
    ) -> None:
        """End a step, and optionally its run, in one commit.

        `new`: the step was not recorded as started (a call without side effects, a skip, a
        model turn): it is inserted whole. `usage` (input tokens, output tokens, cost) is added
        to the run's totals; `thread` (key, items) appends the run's conversation to memory.
        """

        if new and usage is None and thread is None:
            # The common end of a call without side effects: rows only, batched with others.
            now = now_utc()
            values = {**STEP_COLUMNS, **step_values}
            row = {
                **values,
                "run_id": run_id,
                "position": position,
                "started_at": values.get("started_at", now),
                "finished_at": now,
            }
            rows: list[tuple[Any, dict[str, Any]]] = [(INSERT_STEP, row)]
            if run_status is not None:
                end = {"b_run_id": run_id, "b_status": run_status, "b_error": run_error}
                rows.append((END_RUN, {**end, "b_finished_at": now}))
            await self.journal.apply(Bulk(tuple(rows)))
            return

        if new:
            await self.record_steps(
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

    async def record_steps(
        self,
        run_id: int,
        new_steps: list[tuple[int, dict[str, Any]]],
        run_status: str | None = None,
        run_error: str | None = None,
        *,
        usage: tuple[int, int, float] | None = None,
        thread: tuple[str, list[Any]] | None = None,
    ) -> None:
        """Insert finished steps (position, values), add usage, and optionally end the run,
        append its conversation to the thread: all in one commit."""

        def change(conn: Connection) -> None:
            now = now_utc()
            for position, step_values in new_steps:
                values = dict(step_values)
                conn.execute(
                    insert(steps).values(
                        run_id=run_id,
                        position=position,
                        started_at=values.pop("started_at", now),
                        finished_at=now,
                        **values,
                    )
                )
            _end_run(conn, run_id, now, run_status, run_error, usage, thread)

        await self.journal.apply(change)

    async def thread(self, key: str, *, before_run: int | None = None) -> list[Any]:
        """The conversation items stored under a thread key, oldest first."""
        query = select(thread_items.c.item).where(thread_items.c.thread_key == key)
        if before_run is not None:
            query = query.where(thread_items.c.run_id < before_run)
        async with self.engine.connect() as conn:
            return [row.item for row in await conn.execute(query.order_by(thread_items.c.id))]

    async def steps(self, run_id: int) -> list[Step]:
        query = select(steps).where(steps.c.run_id == run_id).order_by(steps.c.position)
        async with self.engine.connect() as conn:
            return [Step.from_row(row) for row in await conn.execute(query)]

    async def step(self, step_id: int) -> Step | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(steps).where(steps.c.id == step_id))).first()
        return Step.from_row(row) if row else None

    async def decide(
        self,
        step_id: int,
        decision: str,
        by: str,
        reason: str | None,
        approved_digest: str | None = None,
    ) -> Step | None:
        """Approve or reject a step awaiting approval; returns it, or None if not awaiting.

        `approved_digest`: the digest of the arguments an approval is given for (the run makes
        the call only if its arguments have it).
        """

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
        return await self.step(step_id)

    # ------------------------------------------------------------------ reading runs

    async def run(self, run_id: int) -> Run | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(runs).where(runs.c.id == run_id))).first()
        return Run.from_row(row) if row else None

    async def runs(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        event_id: int | None = None,
        limit: int = 50,
    ) -> list[Run]:
        query = select(runs).order_by(runs.c.id.desc()).limit(limit)
        if status:
            query = query.where(runs.c.status == status)
        if rule:
            query = query.where(runs.c.rule == rule)
        if event_id is not None:
            query = query.where(runs.c.event_id == event_id)
        async with self.engine.connect() as conn:
            return [Run.from_row(row) for row in await conn.execute(query)]

    async def queue_stats(self) -> dict[str, tuple[int, datetime | None]]:
        """For each queue (events, runs, approvals): how many wait, and since when."""
        queries = {
            "events": select(func.count(), func.min(events.c.received_at)).where(
                events.c.status == EventStatus.PENDING
            ),
            "runs": select(func.count(), func.min(runs.c.created_at)).where(
                runs.c.status.in_((RunStatus.PENDING, RunStatus.RUNNING))
            ),
            "approvals": select(func.count(), func.min(runs.c.created_at)).where(
                runs.c.status == RunStatus.AWAITING_APPROVAL
            ),
        }
        stats: dict[str, tuple[int, datetime | None]] = {}
        async with self.engine.connect() as conn:
            for name, query in queries.items():
                count, oldest = (await conn.execute(query)).one()
                if isinstance(oldest, str):  # SQLite's min() over a DateTime gives its text
                    oldest = datetime.fromisoformat(oldest)
                if oldest is not None and oldest.tzinfo is None:
                    oldest = oldest.replace(tzinfo=UTC)
                stats[name] = (int(count), oldest)
        return stats

    async def count_runs(self, status: str | None = None) -> int:
        query = select(func.count()).select_from(runs)
        if status:
            query = query.where(runs.c.status == status)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())


def _end_run(
    conn: Connection,
    run_id: int,
    now: datetime,
    status: str | None,
    error: str | None,
    usage: tuple[int, int, float] | None,
    thread: tuple[str, list[Any]] | None,
) -> None:
    """The run-level part of finishing steps: usage totals, thread memory, final status."""
    if usage is not None:
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(
                input_tokens=runs.c.input_tokens + usage[0],
                output_tokens=runs.c.output_tokens + usage[1],
                cost=runs.c.cost + usage[2],
            )
        )
    if thread is not None and thread[1]:
        conn.execute(
            insert(thread_items),
            [
                {"thread_key": thread[0], "run_id": run_id, "item": item, "created_at": now}
                for item in thread[1]
            ],
        )
    if status is not None:
        end = {"b_run_id": run_id, "b_status": status, "b_error": error, "b_finished_at": now}
        conn.execute(END_RUN, end)


def _insert_runs(conn: Connection, new_runs: Sequence[NewRun]) -> list[int]:
    """Insert runs in one statement; their ids, in the order given."""
    if not new_runs:
        return []
    keys = sorted({new.ordering_key for new in new_runs if new.ordering_key is not None})
    if keys and conn.dialect.name == "postgresql":
        # Runs of one key run in id order, and a claim sees only committed runs. Two replicas
        # inserting runs of one key at once could commit the higher id first, and a claim in
        # between would take it ahead of the lower one. Holding a lock per key until commit
        # makes each key's runs get their ids in commit order. (SQLite has one writer.)
        conn.execute(LOCK_KEYS, {"b_keys": keys})
    now = now_utc()
    rows = [
        {
            "event_id": new.event_id,
            "rule": new.rule,
            "kind": new.kind,
            "mode": new.mode,
            "ordering_key": new.ordering_key,
            "status": new.status,
            "error": new.error,
            "thread_key": new.thread_key,
            "created_at": now,
            "finished_at": now if new.status in FINISHED else None,
        }
        for new in new_runs
    ]
    result = conn.execute(INSERT_RUNS, rows)
    return [int(row.id) for row in result]
