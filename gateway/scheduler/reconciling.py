"""Reconciliation on a schedule: APScheduler wakes each reconciled source every period.

The store keeps one run per source and period, so any number of replicas (and a restarted
one) make one run per period. Runs are tasks of their own, off the request path: a failing or
slow reconciliation never holds up ingest, and its error is recorded on its run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from gateway.config import Config
from gateway.metrics import Metrics
from gateway.reconcile import period_of, reconcile, reconciled_sources
from gateway.store import Store

log = structlog.get_logger(__name__)

# Periods count from here, so every replica computes the same period for an instant.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Reconciling:
    """Runs each reconciled source's `reconcile` once per its `every`: at start (catching up
    after downtime), then at each period's start."""

    def __init__(
        self,
        store: Store,
        config: Config,
        metrics: Metrics | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.sources = reconciled_sources(config)
        self._runtime: Any = None
        self._running: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        if not self.sources:
            return
        # Imported here: a gateway that reconciles nothing keeps APScheduler out of memory.
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        for name in self.sources:
            await self._wake(name)
        runtime = AsyncIOScheduler(timezone=UTC)
        for name, settings in self.sources.items():
            runtime.add_job(
                self._wake,
                trigger=IntervalTrigger(seconds=settings.every, start_date=EPOCH),
                args=[name],
                id=f"reconcile:{name}",
                coalesce=True,
                max_instances=1,
                misfire_grace_time=max(int(settings.every), 1),
            )
        runtime.start()
        self._runtime = runtime
        log.info("reconcile.scheduled", sources=sorted(self.sources))

    async def _wake(self, name: str) -> None:
        # A coroutine, so APScheduler runs it on the event loop (not on a thread without one).
        running = self._running.get(name)
        if running is not None and not running.done():
            return  # the previous period's run is still going: this period waits for the next
        self._running[name] = asyncio.get_running_loop().create_task(
            self._run(name), name=f"reconcile-{name}"
        )

    async def _run(self, name: str) -> None:
        # A wake a little before its period's start (clock skew) still counts as that period.
        now = self.clock() + timedelta(seconds=1)
        try:
            await reconcile(
                self.store,
                self.config,
                name,
                metrics=self.metrics,
                period=period_of(self.sources[name].every, now),
            )
        except Exception as exc:  # recorded by reconcile where it can be; never stops others
            log.error("reconcile.not_run", source=name, error=f"{type(exc).__name__}: {exc}")

    async def wait(self) -> None:
        """Until the runs started so far have ended (tests, and a clean stop)."""
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def stop(self) -> None:
        if self._runtime is not None:
            self._runtime.shutdown(wait=False)
            self._runtime = None
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
