"""The retry policy: after a retryable failure, when a run tries again, or that it is dead.

A pure decision, `(run, error, retry_after[, tool]) -> Retry | GiveUp`; `outcome.py` carries
it out. The settings and the arithmetic are `policy.py`'s: the config's `retry:` (with the
older `worker:` settings over it), then the tool family's, the tool's and the rule's.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.config import Config
from gateway.retrying import RetryOverride
from gateway.runs.policy import decide, policy_for
from gateway.store import Run


@dataclass(frozen=True)
class Retry:
    """Try the run again after `delay` seconds."""

    delay: float


@dataclass(frozen=True)
class GiveUp:
    """The run is dead: its retries are spent. `error` says so, with the last error."""

    error: str


class RetryPolicy:
    """Exponential backoff with jitter up to a cap, at least the remote's `Retry-After`; dead
    once the horizon has passed since the run's first failure (or after `max_attempts`)."""

    def __init__(
        self,
        config: Config,
        jitter: Callable[[], float] = random.random,
        *,
        rule_retry: Callable[[str], RetryOverride | None] = lambda rule: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.default = config.retry_policy
        self.tools = config.retry.tools
        self._rule_retry = rule_retry
        self._jitter = jitter
        self._clock = clock

    def decide(
        self, run: Run, error: str, retry_after: float | None, tool: str | None = None
    ) -> Retry | GiveUp:
        policy = policy_for(self.default, self.tools, self._rule_retry(run.rule), tool)
        now = self._clock()
        decision = decide(
            policy,
            attempt=run.attempt,
            since=run.retry_since or now,
            now=now,
            retry_after=retry_after,
            jitter=self._jitter,
        )
        if decision.give_up:
            return GiveUp(f"{decision.reason}: {error}")
        return Retry(decision.delay)
