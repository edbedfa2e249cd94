"""Evals kept in the eval store: each `gateway eval` saved with its report, for the dashboard's
eval page and `gateway evals` (list, delete); opened for reading without creating a store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from gateway.errors import SchemaMismatch
from gateway.evaluation.report import EvalReport
from gateway.store import Store
from gateway.store.records import EvalSummary, StoredEval


async def keep(store: Store, rules: str, copies: Sequence[int], report: EvalReport) -> int:
    """Save `report` (of the candidate rules in the folder `rules`, whose events were copied in as
    `copies`) in the eval store; its id, also set on the report."""
    totals = report.totals
    summary = EvalSummary(
        id=0,
        created_at=datetime.now(UTC),
        rules=rules[:1000],
        events=totals.events,
        changed=totals.changed,
        cost_live=totals.cost_live,
        cost_candidate=totals.cost_candidate,
        latency_delta_ms=totals.latency_delta_ms,
        expectations=totals.expectations,
        expectations_failed=totals.expectations_failed,
    )
    report.rules = summary.rules
    report.id = await store.evals.add(summary, copies, report.model_dump(mode="json"))
    return report.id


async def open_evals(url: str) -> Store | None:
    """The eval store at `url`, open and at the current schema, or None if it has none yet
    (a SQLite file that is not there: reading must not create it)."""
    store = Store(url)
    if _no_file(store):
        await _dispose(store)
        return None
    try:
        await store.open(migrate=False)
    except SchemaMismatch:
        # Kept by an older gateway: the eval store is the evals' own, brought up to date.
        await _dispose(store)
        store = Store(url)
        await store.open(migrate=True)
    return store


# Evals listed at once (the dashboard's page, `gateway evals`), newest first.
MAX_LISTED = 200


async def listed(url: str, limit: int = MAX_LISTED) -> list[EvalSummary]:
    """The newest evals kept at `url` ([] when it holds none yet)."""
    store = await open_evals(url)
    if store is None:
        return []
    try:
        return await store.evals.latest(min(limit, MAX_LISTED))
    finally:
        await store.close()


async def stored(url: str, eval_id: int) -> StoredEval | None:
    """One eval kept at `url`, with its report."""
    store = await open_evals(url)
    if store is None:
        return None
    try:
        return await store.evals.get(eval_id)
    finally:
        await store.close()


async def delete(url: str, eval_id: int) -> bool:
    """Forget one eval kept at `url` and all it copied in; False if there was none."""
    store = await open_evals(url)
    if store is None:
        return False
    try:
        return await store.evals.delete(eval_id)
    finally:
        await store.close()


def _no_file(store: Store) -> bool:
    """Whether `store` is SQLite in a file that is not there."""
    return store.dialect.single_writer and not Path(store.engine.url.database or "").is_file()


async def _dispose(store: Store) -> None:
    """Let go of a store that was not opened (its writers never started)."""
    await store.engine.dispose()
    if store.write_engine is not store.engine:
        await store.write_engine.dispose()
