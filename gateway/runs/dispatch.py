"""Carrying out one claimed run: its rule's executor, given the event's scope, a resumed run's
journal and the tools its rule names prepared, under the run's log context and trace spans."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog

from gateway import tracing
from gateway.rules.model import Rule
from gateway.rules.scope import reads_payload, scope_for
from gateway.runs.executor import Executor
from gateway.runs.outcome import Outcomes
from gateway.store import Event, Run, Store
from gateway.store.status import RunStatus

log = structlog.get_logger(__name__)


class Dispatch:
    """Hands each run to the executor of its rule's kind (`executors`, the worker's)."""

    def __init__(
        self,
        store: Store,
        outcomes: Outcomes,
        executors: Mapping[str, Executor],
        prepare: Callable[[Iterable[str]], Awaitable[None]],
    ) -> None:
        self.store = store
        self.outcomes = outcomes
        self.executors = executors
        # Lists the MCP servers a rule's tools come from (`Catalogue.prepare`).
        self._prepare = prepare

    async def run(self, run: Run, rule: Rule, event: Event) -> None:
        started = time.perf_counter()
        scope = scope_for(event, now=run.created_at, parse=reads_payload(rule))
        structlog.contextvars.bind_contextvars(run_id=run.id, event_id=event.id)
        with (
            tracing.span("event", event_id=event.id, source=event.source, type=event.type),
            tracing.span("run", run_id=run.id, rule=run.rule, attempt=run.attempt),
        ):
            await self._run(run, rule, event, scope, started)

    async def _run(
        self, run: Run, rule: Rule, event: Event, scope: dict[str, Any], started: float
    ) -> None:
        try:
            executor = self.executors.get(rule.kind)
            if executor is None:
                await self.outcomes.end(
                    run, RunStatus.FAILED, f"no {rule.kind} backend is configured"
                )
                return
            # A resumed run's journal, read once: its executor rebuilds from it and resumes.
            journal = [] if run.fresh else await self.store.steps.of_run(run.id)
            if not await self.outcomes.prepared(run, self._prepare(rule.tools)):
                return
            await executor.execute(run, rule, event, scope, journal)
        finally:
            log.debug("run.executed", ms=round((time.perf_counter() - started) * 1000, 2))
            structlog.contextvars.unbind_contextvars("run_id", "event_id")
