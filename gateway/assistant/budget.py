"""Daily budgets: before every model turn, what the rule (and all rules) spent today is
compared with its `budget:`; a run that finds one reached makes no model request.

Spend is summed from the journal (`store.spending`), so replicas sharing a PostgreSQL store
share one budget. Runs already past the check when the budget is reached still finish their
turn: the overshoot is at most one model turn per run in flight (docs/mcp.md, Budgets).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import structlog

from gateway.config import Budget, Config
from gateway.metrics import Metrics
from gateway.rules.model import Rule
from gateway.store import Run, RunStatus, Store

log = structlog.get_logger(__name__)

REACHED = "budget reached"


class Worker(Protocol):
    """What a budget needs of the worker running the run: its store and its metrics."""

    @property
    def store(self) -> Store: ...

    @property
    def metrics(self) -> Metrics: ...


@dataclass(frozen=True)
class Verdict:
    """A budget found reached: which, why, what the run does, and when the next day starts."""

    scope: str  # "rule" or "global"
    reason: str
    on_budget: str
    next_day: datetime


class Budgets:
    """The budgets of one gateway; `clock` is injected by tests (default: now, in UTC)."""

    def __init__(self, config: Config, clock: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.zone = ZoneInfo(config.budget.timezone if config.budget else "UTC")
        self.clock = clock or (lambda: datetime.now(UTC))

    def today(self) -> tuple[datetime, datetime]:
        """This day's start and the next day's, in the budget's zone."""
        now = self.clock().astimezone(self.zone)
        start = datetime.combine(now.date(), datetime.min.time(), self.zone)
        following = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), self.zone)
        return start, following

    async def check(self, store: Store, rule: Rule) -> Verdict | None:
        """The first budget of `rule` (its own, then the global one) reached today, or None."""
        scopes: list[tuple[str, Budget | None, str | None]] = [
            ("rule", rule.budget, rule.name),
            ("global", self.config.budget, None),
        ]
        start, following = self.today()
        on_budget = (rule.budget or self.config.budget or Budget()).on_budget
        for scope, budget, only in scopes:
            if budget is None or (budget.cost_per_day is None and budget.tokens_per_day is None):
                continue
            spent = await store.spending.spent(start, following, only)
            over = None
            if budget.cost_per_day is not None and spent.cost >= budget.cost_per_day:
                over = f"cost {spent.cost:.4f} of {budget.cost_per_day:g} USD"
            elif budget.tokens_per_day is not None and spent.tokens >= budget.tokens_per_day:
                over = f"{spent.tokens} of {budget.tokens_per_day} tokens"
            if over is not None:
                where = f"rule {rule.name}" if scope == "rule" else "global"
                reason = f"{REACHED}: {where} budget, {over} today ({start.date()})"
                return Verdict(scope, reason, on_budget, following)
        return None


async def enforce(
    budgets: Budgets,
    worker: Worker,
    run: Run,
    rule: Rule,
    fail: Callable[[RunStatus, str], Awaitable[None]],
) -> bool:
    """Stop the run before a model turn if a budget is reached (True): `fail` it, or put it
    off to the next day's start for `on_budget: defer`; either way the metric counts it."""
    store = worker.store
    verdict = await budgets.check(store, rule)
    if verdict is None:
        return False
    worker.metrics.budget_reached.labels(rule.name, verdict.scope).inc()
    log.warning("budget.reached", rule=rule.name, scope=verdict.scope, reason=verdict.reason)
    if verdict.on_budget == "defer":
        await store.runs.retry_later(
            run.id, verdict.next_day.astimezone(UTC), f"{verdict.reason}; deferred"
        )
    else:
        await fail(RunStatus.FAILED, verdict.reason)
    return True


async def reached_today(store: Store, config: Config, rules: Iterable[Rule]) -> list[str]:
    """Each budget reached today, as the dashboard's events page shows it (one line each)."""
    budgets = Budgets(config)
    found: dict[str, str] = {}
    for rule in rules:
        if rule.assistant is not None and (rule.budget or config.budget):
            verdict = await budgets.check(store, rule)
            if verdict is not None:
                # A global budget reached is the same line for every rule: shown once.
                found.setdefault(
                    verdict.reason if verdict.scope == "global" else rule.name, verdict.reason
                )
    return list(found.values())
