"""The retry decision: when a run that failed in a way that may pass is tried again, and when
the gateway gives up. Pure: from the attempts, the times and the settings (`config.RetryPolicy`).

Defaults outlast a downstream outage as the systems feeding the gateway do (Shopify retries a
webhook for 4 h, Stripe for 3 days): backoff doubling up to 10 min, tried for 24 h.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.retrying import RetryOverride, RetryPolicy


@dataclass(frozen=True)
class Decision:
    """Try again at `at` (after `delay` seconds), or give up (`at` is None) for `reason`."""

    at: datetime | None
    delay: float = 0.0
    reason: str = ""

    @property
    def give_up(self) -> bool:
        return self.at is None


def decide(
    policy: RetryPolicy,
    *,
    attempt: int,
    since: datetime,
    now: datetime,
    retry_after: float | None = None,
    jitter: Callable[[], float] = random.random,
) -> Decision:
    """After failed attempt number `attempt` of a run failing since `since`: when next.

    The delay doubles from `backoff_base` up to `backoff_max`, times a jitter in [0.5, 1) so
    the runs of one outage do not come back together; a `Retry-After` is a floor. The last
    try is made at the horizon, not skipped.
    """
    if policy.max_attempts is not None and attempt >= policy.max_attempts:
        return Decision(None, reason=f"gave up after {attempt} attempts")
    deadline = since + timedelta(seconds=policy.horizon)
    if now >= deadline:
        span = timedelta(seconds=round(policy.horizon))
        return Decision(
            None, reason=f"gave up after {attempt} attempts in the {span} retry horizon"
        )
    exponent = min(max(attempt - 1, 0), 60)  # 2**60 s is past any cap: no overflow
    delay = min(policy.backoff_max, policy.backoff_base * 2**exponent)
    delay *= 0.5 + jitter() / 2
    if retry_after is not None:
        delay = max(delay, retry_after)
    at = now + timedelta(seconds=delay)
    if at > deadline:  # one last try, at the horizon
        return Decision(deadline, (deadline - now).total_seconds())
    return Decision(at, delay)


def policy_for(
    default: RetryPolicy,
    tools: Mapping[str, RetryOverride],
    rule: RetryOverride | None,
    tool: str | None,
) -> RetryPolicy:
    """The policy a failed call retries under: the default, then the tool family's override
    (`http`), the tool's (`http.request`), then the rule's."""
    family = tool.split(".", 1)[0] if tool else None
    return default.merged(
        tools.get(family) if family else None,
        tools.get(tool) if tool else None,
        rule,
    )
