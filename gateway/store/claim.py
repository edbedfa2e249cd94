"""Claiming runs: the statements a worker takes runs with, under a lease, key by key.

Built once at import: building these statements cost more than running them (bench/drain).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Row, Select, bindparam, func, or_, select, text, update

from gateway.store.database import Dialect
from gateway.store.part import now_utc
from gateway.store.records import Run
from gateway.store.schema import UNFINISHED, runs
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
    # Never started before: no journal to read back (what the worker skips).
    fresh = {row.id for row in found if row.started_at is None}
    expires = now + timedelta(seconds=lease)
    params = {"b_ids": ids, "b_owner": owner, "b_now": now, "b_expires": expires}
    conn.execute(TAKE_RUNS, params)
    rows = conn.execute(SELECT_RUNS, {"b_ids": ids})
    return [Run.from_row(row, fresh=row.id in fresh) for row in rows]
