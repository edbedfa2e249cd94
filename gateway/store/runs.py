"""The run store: routing events into runs, claiming them, and every change of a run's state.

Changes go through the journal (group commit); the claim statements are in `claim`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store import claim as claiming
from gateway.store import presence
from gateway.store.abc import Claim, Route
from gateway.store.batching import Journal
from gateway.store.database import Dialect
from gateway.store.part import Part, now_utc
from gateway.store.records import NewRun, Run
from gateway.store.schema import event_status, events, runs
from gateway.store.sqlite_values import chunks, insert_rows, sqlite_value
from gateway.store.status import FINISHED, EventStatus, RunStatus

INSERT_RUNS = insert(runs).returning(runs.c.id, sort_by_parameter_order=True)
# On SQLite, SQLAlchemy keeps RETURNING in the parameters' order by sending a row at a time
# (29 INSERTs per journal commit under bench/sustain). SQLite has one writer and gives a
# statement's rows ascending ids in VALUES order: one statement per piece of 2^k rows (a few
# shapes, all kept prepared), its ids sorted.
RUN_COLUMNS = (
    "event_id", "rule", "kind", "mode", "ordering_key", "status", "error", "thread_key",
    "created_at", "finished_at",
)  # fmt: skip
# Rows per statement at most: 10 variables each, far under SQLite's 32,766.
SQLITE_PIECE_MAX = 1024
MARK_EVENT = (
    update(event_status)
    .where(event_status.c.event_id == bindparam("b_id"))
    .values(status=bindparam("b_status"))
)
# Transaction-scoped advisory locks on ordering keys (two-int form, namespace "gate"), taken
# in one order so that two transactions never wait for each other's keys.
LOCK_KEYS = text(
    "SELECT pg_advisory_xact_lock(1734440037, h)"
    " FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(CAST(:b_keys AS text[])) AS k"
    " ORDER BY h) AS ordered"
)
# Runs held by a replica marked present (`gateway.store.presence`) whose advisory lock is gone:
# their lease ends now. The two-int lock's second key shows in pg_locks as an unsigned objid.
RELEASE_ORPHANS = text(
    "UPDATE runs SET lease_expires_at = :b_now"
    f" WHERE status = 'running' AND lease_owner LIKE '%{presence.MARK}'"
    " AND lease_expires_at > :b_now"
    " AND (hashtext(lease_owner)::bigint & 4294967295) NOT IN ("
    "  SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
    f"  AND classid = {presence.NAMESPACE} AND objsubid = 2"
    "  AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
)
# Which of the events being routed are still pending (built once: routing commits often).
STILL_PENDING = select(event_status.c.event_id).where(
    event_status.c.event_id.in_(bindparam("b_ids", expanding=True)),
    event_status.c.status == EventStatus.PENDING,
)
# The earliest retry or wait, for the worker's idle wait.
NEXT_DUE = select(func.min(runs.c.next_attempt_at)).where(
    runs.c.status.in_((RunStatus.PENDING, RunStatus.WAITING)),
    runs.c.next_attempt_at.is_not(None),
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


def end_run(run_id: int, status: RunStatus, error: str | None, at: datetime) -> dict[str, Any]:
    """The parameters of `END_RUN`: the run ends in `status` at `at`, its lease dropped."""
    return {"b_run_id": run_id, "b_status": status, "b_error": error, "b_finished_at": at}


class Runs(Part):
    """`RunStore` on the `runs` table."""

    def __init__(self, engine: AsyncEngine, journal: Journal, dialect: Dialect) -> None:
        super().__init__(engine, journal, dialect)
        self._claimable = claiming.claimable(dialect)
        self._still_pending = STILL_PENDING
        if dialect.skip_locked:
            # Replicas routing the same page: each event goes to whoever locks it first; the
            # others skip it. (SQLite's IMMEDIATE transactions already serialise.)
            self._still_pending = STILL_PENDING.with_for_update(skip_locked=True)

    # ------------------------------------------------------------------ routing

    async def route(self, event_id: int, new_runs: Sequence[NewRun], status: str) -> list[int]:
        created, _ = await self.route_and_claim([(event_id, new_runs, status)], None)
        return created[0] or []

    async def route_and_claim(
        self, routes: Sequence[Route], claim: Claim | None
    ) -> tuple[list[list[int] | None], list[Run]]:
        def change(conn: Connection) -> tuple[list[list[int] | None], list[Run]]:
            ids = [event_id for event_id, _, _ in routes]
            still = {row.event_id for row in conn.execute(self._still_pending, {"b_ids": ids})}
            mine = [(e, planned, status) for e, planned, status in routes if e in still]
            if mine:
                conn.execute(MARK_EVENT, [{"b_id": e, "b_status": status} for e, _, status in mine])
            created = insert_runs(conn, [new for _, planned, _ in mine for new in planned])
            by_event: dict[int, list[int]] = {}
            for new, run_id in zip(
                [new for _, planned, _ in mine for new in planned], created, strict=True
            ):
                by_event.setdefault(new.event_id, []).append(run_id)
            claimed = (
                claiming.take(conn, self._claimable, *claim)
                if claim is not None and claim[1] > 0
                else []
            )
            routed = [by_event.get(e, []) if e in still else None for e in ids]
            return routed, claimed

        return await self.journal.apply(change)

    async def add(self, new_runs: Sequence[NewRun]) -> list[int]:
        def change(conn: Connection) -> list[int]:
            return insert_runs(conn, new_runs)

        return await self.journal.apply(change)

    # ------------------------------------------------------------------ claiming

    async def claim(self, owner: str, limit: int, lease: float) -> list[Run]:
        if limit <= 0:
            return []
        return await self.journal.apply(
            lambda conn: claiming.take(conn, self._claimable, owner, limit, lease)
        )

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
        def change(conn: Connection) -> int:
            result = conn.execute(
                update(runs)
                .where(runs.c.status == RunStatus.RUNNING)
                .values(lease_expires_at=now_utc())
            )
            return int(result.rowcount)

        return await self.journal.apply(change)

    async def release_orphans(self) -> int:
        if self.dialect.single_writer:
            return 0  # one worker per SQLite file: its runs are resumed when it starts

        def change(conn: Connection) -> int:
            result = conn.execute(RELEASE_ORPHANS, {"b_now": now_utc()})
            return int(result.rowcount)

        return await self.journal.apply(change)

    async def next_due(self) -> datetime | None:
        value: datetime | None = await self._scalar(NEXT_DUE)
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    # ------------------------------------------------------------------ changing state

    async def finish(self, run_id: int, status: RunStatus, error: str | None = None) -> None:
        def change(conn: Connection) -> None:
            conn.execute(END_RUN, end_run(run_id, status, error, now_utc()))

        await self.journal.apply(change)

    async def retry_later(self, run_id: int, at: datetime, error: str) -> None:
        await self._release(
            run_id,
            status=RunStatus.PENDING,
            error=error,
            next_attempt_at=at,
            retry_since=func.coalesce(runs.c.retry_since, now_utc()),
        )

    async def wait(self, run_id: int, until: datetime, reason: str) -> None:
        await self._release(
            run_id,
            status=RunStatus.WAITING,
            error=reason,
            next_attempt_at=until,
            # Waiting spends no attempt: the claim that took it counted one.
            attempt=case((runs.c.attempt > 0, runs.c.attempt - 1), else_=0),
        )

    async def wake(self, reason: str) -> int:
        def change(conn: Connection) -> int:
            result = conn.execute(
                update(runs)
                .where(runs.c.status == RunStatus.WAITING, runs.c.error == reason)
                .values(next_attempt_at=now_utc())
            )
            return int(result.rowcount)

        return await self.journal.apply(change)

    async def pause(self, run_id: int, status: RunStatus) -> None:
        await self._release(run_id, status=status)

    async def _release(self, run_id: int, **values: Any) -> None:
        """Change a run's state and drop its lease: it is no longer anyone's to run now."""

        def change(conn: Connection) -> None:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(**values, lease_owner=None, lease_expires_at=None)
            )

        await self.journal.apply(change)

    async def requeue(self, run_id: int, *, reset_attempts: bool) -> bool:
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
                values["retry_since"] = None  # a new series: a new retry horizon
            result = conn.execute(
                update(runs)
                .where(runs.c.id == run_id, runs.c.status != RunStatus.RUNNING)
                .values(values)
            )
            return bool(result.rowcount)

        return await self.journal.apply(change)

    # ------------------------------------------------------------------ reading

    async def get(self, run_id: int) -> Run | None:
        row = await self._first(select(runs).where(runs.c.id == run_id))
        return Run.from_row(row) if row else None

    async def find(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        event_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        oldest_first: bool = False,
    ) -> list[Run]:
        order = runs.c.id if oldest_first else runs.c.id.desc()
        query = select(runs).order_by(order).limit(limit)
        if status:
            query = query.where(runs.c.status == status)
        if rule:
            query = query.where(runs.c.rule == rule)
        if event_id is not None:
            query = query.where(runs.c.event_id == event_id)
        if since is not None:
            query = query.where(runs.c.created_at >= since.astimezone(UTC))
        if until is not None:
            query = query.where(runs.c.created_at < until.astimezone(UTC))
        return [Run.from_row(row) for row in await self._rows(query)]

    async def queue_stats(self) -> dict[str, tuple[int, datetime | None]]:
        queries = {
            "events": select(func.count(), func.min(events.c.received_at))
            .join_from(events, event_status)
            .where(event_status.c.status == EventStatus.PENDING),
            "runs": select(func.count(), func.min(runs.c.created_at)).where(
                runs.c.status.in_((RunStatus.PENDING, RunStatus.RUNNING))
            ),
            "approvals": select(func.count(), func.min(runs.c.created_at)).where(
                runs.c.status == RunStatus.AWAITING_APPROVAL
            ),
            "waiting": select(func.count(), func.min(runs.c.created_at)).where(
                runs.c.status == RunStatus.WAITING
            ),
            # Thin events whose object is being fetched (and retried) before routing.
            "fetches": select(func.count(), func.min(events.c.received_at))
            .join_from(events, event_status)
            .where(event_status.c.status == EventStatus.FETCHING),
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

    async def count(self, status: str | None = None) -> int:
        query = select(func.count()).select_from(runs)
        if status:
            query = query.where(runs.c.status == status)
        return int(await self._scalar(query))


def insert_runs(conn: Connection, new_runs: Sequence[NewRun]) -> list[int]:
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
    if conn.dialect.name == "sqlite":
        return _insert_runs_sqlite(conn, rows)
    result = conn.execute(INSERT_RUNS, rows)
    return [int(row.id) for row in result]


def _insert_runs_sqlite(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    ids: list[int] = []
    for first in range(0, len(rows), SQLITE_PIECE_MAX):
        block = rows[first : first + SQLITE_PIECE_MAX]
        for start, size in chunks(len(block)):
            values = [
                sqlite_value(row[column])
                for row in block[start : start + size]
                for column in RUN_COLUMNS
            ]
            result = conn.exec_driver_sql(_insert_runs_statement(size), tuple(values))
            ids += sorted(int(run_id) for (run_id,) in result)
    return ids


@cache
def _insert_runs_statement(size: int) -> str:
    return insert_rows("runs", RUN_COLUMNS, size) + " RETURNING id"
