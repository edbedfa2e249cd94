"""One reconciliation run of a source, recorded: where it starts, what it found, how it ended.

The scheduler (each period, once across replicas) and `gateway backfill` both call
`reconcile`; a failing run records its error and raises nothing, so nothing else waits on it.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

from gateway.config import Config
from gateway.errors import ConfigError
from gateway.metrics import Metrics
from gateway.reconcile.base import RECONCILERS, Reconciler, Sleep, Tally, log
from gateway.reconcile_config import ReconcileSettings
from gateway.reconcile_config import problems as setting_problems
from gateway.reconcile_config import settings as read_settings
from gateway.store import ReconcileStatus, Reconciliation, Store

# The longest error text a run record keeps.
MAX_ERROR = 2000


def reconciled_sources(config: Config) -> dict[str, ReconcileSettings]:
    """Each source with a `reconcile:` block, with its settings (valid: `gateway check` and
    start-up refuse a config whose blocks are not)."""
    found = {}
    for name, source in config.sources.items():
        if source.reconcile is not None:
            if setting_problems(source.provider, source.reconcile):
                raise ConfigError([f"sources.{name}.reconcile is invalid: run gateway check"])
            found[name] = read_settings(source.provider, source.reconcile)
    return found


def period_of(every: float, now: datetime) -> str:
    """The scheduled period `now` falls in: every replica computes the same one, and the store
    keeps one run per source and period."""
    index = int(now.timestamp() // every)
    return f"every {every:g}s #{index}"


def start_of(settings: ReconcileSettings, last: Reconciliation | None, now: datetime) -> datetime:
    """Where a run starts: the newest event the last successful run saw, less the overlap;
    without one, `lookback` before now."""
    if last is not None and last.cursor:
        return datetime.fromisoformat(last.cursor) - timedelta(seconds=settings.overlap)
    return now - timedelta(seconds=settings.lookback)


async def reconcile(
    store: Store,
    config: Config,
    source: str,
    *,
    metrics: Metrics | None = None,
    since: datetime | None = None,
    mode: str | None = None,
    period: str | None = None,
    now: datetime | None = None,
    sleep: Sleep = asyncio.sleep,
) -> Reconciliation | None:
    """Run `source`'s reconciliation once and return its record; None if `period` was run
    already (by another replica or an earlier life of this one). `since`: from then on
    instead of from the last success (backfill); `mode`: instead of the configured one."""
    settings = reconciled_sources(config).get(source)
    if settings is None:
        raise ConfigError([f"source {source!r} has no reconcile: block (docs/reconcile.md)"])
    if mode is not None:
        block = {**(config.sources[source].reconcile or {}), "mode": mode}
        found = setting_problems(config.sources[source].provider, block)
        if found:
            raise ConfigError([f"mode {mode!r}: {message}" for _, message in found])
        settings = read_settings(config.sources[source].provider, block)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    last = await store.reconciliations.last_success(source)
    start = since.astimezone(UTC) if since is not None else start_of(settings, last, now)
    run_mode = str(getattr(settings, "mode", "fetch"))
    run_id = await store.reconciliations.begin(
        source, period or f"once {now.isoformat()} {secrets.token_hex(4)}", run_mode, start, now
    )
    if run_id is None:
        log.info("reconcile.period_taken", source=source, period=period)
        return None
    reconciler: Reconciler = RECONCILERS[config.sources[source].provider](
        source, config.sources[source], settings, store, metrics=metrics, sleep=sleep
    )
    tally = Tally()
    log.info("reconcile.started", source=source, since=start.isoformat(), mode=run_mode)
    try:
        await reconciler.run(start, tally)
    except Exception as exc:  # recorded, never raised: ingest and the schedule go on
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        await store.reconciliations.finish(
            run_id, ReconcileStatus.FAILED, datetime.now(UTC), error=error, **tally.counts()
        )
        log.error("reconcile.failed", source=source, error=error, **tally.counts())
    else:
        # Nothing newer seen: the next run starts where this one did.
        cursor = tally.cursor or (last.cursor if last is not None else None) or start.isoformat()
        await store.reconciliations.finish(
            run_id, ReconcileStatus.SUCCEEDED, datetime.now(UTC), cursor=cursor, **tally.counts()
        )
        log.info("reconcile.finished", source=source, cursor=cursor, **tally.counts())
    return next(r for r in await store.reconciliations.recent(source, 5) if r.id == run_id)
