"""How a run ends, or waits to try again: the one place that finishes runs and counts them.

Executors and the journal are given an `Outcomes`; none of them knows the worker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog

from gateway.errors import ToolError
from gateway.metrics import Metrics
from gateway.runs.retry import GiveUp, RetryPolicy
from gateway.store import Run, Store
from gateway.store.status import RunStatus

log = structlog.get_logger(__name__)


class Outcomes:
    """Ends runs (`end`, `ended`) and schedules their retries (`retry_or_dead`)."""

    def __init__(
        self,
        store: Store,
        policy: RetryPolicy,
        metrics: Metrics,
        *,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.metrics = metrics
        # Told when a retry is due (the worker's run loop waits for the earliest).
        self._wake = wake
        # Files produced during a run (name → bytes), for later steps such as an attachment;
        # dropped when the run ends.
        self.files: dict[int, dict[str, bytes]] = {}
        # Callbacks told about each run that ends (metrics, tests, benches).
        self.on_run_end: list[Callable[[int, str], None]] = []

    async def prepared(self, run: Run, preparing: Awaitable[None]) -> bool:
        """Await what a run needs before it starts (the MCP servers its rule names listed,
        docs/mcp.md); if that fails, retry the run later or fail it, and say False."""
        try:
            await preparing
        except ToolError as exc:
            if exc.retryable:
                await self.retry_or_dead(run, str(exc), exc.retry_after)
            else:
                await self.end(run, RunStatus.FAILED, str(exc))
            return False
        return True

    async def retry_or_dead(
        self, run: Run, error: str, retry_after: float | None, tool: str | None = None
    ) -> None:
        """After a retryable failure (of `tool`'s call, if it was one): retry later, or dead."""
        decision = self.policy.decide(run, error, retry_after, tool)
        if isinstance(decision, GiveUp):
            await self.end(run, RunStatus.DEAD, decision.error)
            return
        at = datetime.now(UTC) + timedelta(seconds=decision.delay)
        await self.store.runs.retry_later(run.id, at, error)
        self.metrics.retries.labels(run.rule).inc()
        log.warning("run.retry", attempt=run.attempt, delay=round(decision.delay, 3), error=error)
        self._wake()

    async def end(self, run: Run, status: RunStatus, error: str | None = None) -> None:
        await self.store.runs.finish(run.id, status, error)
        self.ended(run, status)

    def ended(self, run: Run, status: RunStatus) -> None:
        """A run's end was committed (by `end`, or with its last step)."""
        self.files.pop(run.id, None)
        # A success is debug: a line per run cost the worker a tenth of its time (bench/sustain);
        # every other ending stays at info.
        report = log.debug if status == RunStatus.SUCCEEDED else log.info
        report("run.ended", run_id=run.id, rule=run.rule, status=status)
        self.metrics.child(self.metrics.runs, run.rule, status).inc()
        for callback in self.on_run_end:
            callback(run.id, status)
