"""Claiming runs: the statements a worker takes runs with, under a lease, key by key.

Built once at import: building these statements cost more than running them (bench/drain).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Connection, Row, Select, bindparam, func, or_, select, text, update

from gateway.store.database import Dialect
from gateway.store.part import now_utc
from gateway.store.records import Run
from gateway.store.schema import UNFINISHED, runs
from gateway.store.sqlite_values import sqlite_datetime, sqlite_time
from gateway.store.status import RunStatus

# A run is claimable when no earlier run with its ordering key is unfinished. Two queries,
# each walking ix_runs_status_id in id order: one over both statuses (an OR) made SQLite
# collect and sort every pending run to return the first few.
_EARLIER = runs.alias("earlier")
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
# Runs parked while a downstream's circuit was open, due for their next try (or woken early
# when a probe found the downstream back).
CLAIM_WAITING = (
    select(runs.c.id, runs.c.started_at)
    .where(runs.c.status == RunStatus.WAITING, runs.c.next_attempt_at <= _NOW, _KEY_FREE)
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


def claimable(dialect: Dialect) -> list[Select[Any]]:
    """The claim queries in the order they are tried: runs whose worker died (lease expired)
    first, then runs that are due, then waiting runs due for a try. Where replicas claim side
    by side, each skips the rows another one locked."""
    queries = [CLAIM_EXPIRED, CLAIM_DUE, CLAIM_WAITING]
    if dialect.skip_locked:
        return [query.with_for_update(skip_locked=True, of=runs) for query in queries]
    return queries


def take(
    conn: Connection, queries: list[Select[Any]], owner: str, limit: int, lease: float
) -> list[Run]:
    """Claim up to `limit` runs for `owner` in the transaction of `conn` (see `claimable`)."""
    now = now_utc()
    found: list[Row[Any]] = []
    for query in queries:
        params = {"b_now": now, "b_limit": limit - len(found)}
        found += conn.execute(query, params)
        if len(found) >= limit:
            break
    ids = [row.id for row in found]
    if not ids:
        return []
    fresh = {row.id for row in found if row.started_at is None}
    taking = Taking(ids, fresh, owner, now, now + timedelta(seconds=lease))
    if conn.dialect.name == "sqlite":
        return _take_sqlite(conn, taking)
    return _take_core(conn, taking)


@dataclass(frozen=True)
class Taking:
    """Runs found claimable, to put under `owner`'s lease until `expires`."""

    ids: list[int]
    fresh: set[int]  # never started before: no journal to read back (what the worker skips)
    owner: str
    now: datetime
    expires: datetime


def _take_core(conn: Connection, taking: Taking) -> list[Run]:
    """Put the runs under the lease and read them back (PostgreSQL)."""
    ids, now = taking.ids, taking.now
    params = {"b_ids": ids, "b_owner": taking.owner, "b_now": now, "b_expires": taking.expires}
    conn.execute(TAKE_RUNS, params)
    rows = conn.execute(SELECT_RUNS, {"b_ids": ids})
    return [Run.from_row(row, fresh=row.id in taking.fresh) for row in rows]


# `Run`'s fields in its order, `fresh` left out (the claim knows it): a taken run's row as
# `UPDATE ... RETURNING` gives it on SQLite, where TAKE_RUNS, SELECT_RUNS and `Run.from_row`
# over SQLAlchemy's rows cost 15 us per run (a claim of 33: 720 us, 510 of them those).
_RUN_COLUMNS = [f.name for f in fields(Run) if f.name != "fresh"]
_TAKE_RUNS_SQLITE = (
    "UPDATE runs SET status = ?, lease_owner = ?, lease_expires_at = ?, attempt = attempt + 1,"
    " started_at = coalesce(started_at, ?) WHERE id IN (SELECT value FROM json_each(?))"
    f" RETURNING {', '.join(_RUN_COLUMNS)}"
)


def _run_of(row: Sequence[Any], fresh: bool) -> Run:
    (id_, event_id, rule, kind, mode, status, key, attempt, next_attempt_at, created_at,
     started_at, finished_at, error, thread_key, input_tokens, output_tokens, cost,
     retry_since) = row  # fmt: skip
    return Run(id_, event_id, rule, kind, mode, status, key, attempt,
               sqlite_datetime(next_attempt_at), sqlite_datetime(created_at),  # type: ignore[arg-type]
               sqlite_datetime(started_at), sqlite_datetime(finished_at), error, thread_key,
               input_tokens, output_tokens, cost, fresh, sqlite_datetime(retry_since))  # fmt: skip


def _take_sqlite(conn: Connection, taking: Taking) -> list[Run]:
    """`_take_core` as one statement through the DB-API, in the transaction of `conn`: the
    same rows changed the same way, the same `Run`s (tests/test_claim.py holds them equal)."""
    params = (RunStatus.RUNNING.value, taking.owner, sqlite_time(taking.expires),
              sqlite_time(taking.now), orjson.dumps(taking.ids).decode())  # fmt: skip
    raw = conn.connection.dbapi_connection
    assert raw is not None
    taken = raw.cursor().execute(_TAKE_RUNS_SQLITE, params).fetchall()
    taken.sort(key=itemgetter(0))  # RETURNING's order is not the ids'
    return [_run_of(row, row[0] in taking.fresh) for row in taken]
