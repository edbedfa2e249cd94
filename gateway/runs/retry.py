"""The retry policy: after a retryable failure, when a run tries again, or that it is dead.

A pure decision, `(run, error, retry_after) -> Retry | GiveUp`; `outcome.py` carries it out.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import WorkerConfig
from gateway.store import Run


@dataclass(frozen=True)
class Retry:
    """Try the run again after `delay` seconds."""

    delay: float


@dataclass(frozen=True)
class GiveUp:
    """The run is dead: its attempts are spent. `error` says so, with the last error."""

    error: str


class RetryPolicy:
    """Exponential backoff with jitter, at least the remote's `Retry-After`; dead after
    `max_attempts` (the `worker:` settings)."""

    def __init__(self, settings: WorkerConfig, jitter: Callable[[], float] = random.random) -> None:
        self.max_attempts = settings.max_attempts
        self.base = settings.backoff_base
        self.cap = settings.backoff_max
        self._jitter = jitter

    def decide(self, run: Run, error: str, retry_after: float | None) -> Retry | GiveUp:
        if run.attempt >= self.max_attempts:
            return GiveUp(f"gave up after {run.attempt} attempts: {error}")
        delay = min(self.cap, self.base * 2 ** (run.attempt - 1))
        delay *= 0.5 + self._jitter() / 2  # jitter: retries of many runs do not align
        if retry_after is not None:
            delay = max(delay, retry_after)
        return Retry(delay)
