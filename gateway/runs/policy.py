"""The retry policy: when a run that failed in a way that may pass is tried again, and when
the gateway gives up. Pure: the decision comes from the attempts, the times and the settings.

Defaults outlast a downstream outage as the systems feeding the gateway do (Shopify retries a
webhook for 4 h, Stripe for 3 days): backoff doubling up to 10 min, tried for 24 h.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def seconds(value: Any) -> Any:
    """A duration as seconds: a number, or text such as `90s`, `10m`, `24h`, `1h30m`."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _PART.findall(text)
    if not parts or _PART.sub("", text).strip():
        raise ValueError(f"{value!r} is not a duration such as 30s, 10m, 24h or 1h30m")
    return sum(float(amount) * _UNIT_SECONDS[unit] for amount, unit in parts)


# Seconds, written as a number or as `10m`.
Seconds = Annotated[float, BeforeValidator(seconds)]


class RetryOverride(BaseModel):
    """A rule's or a tool's `retry:`: only the settings it changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backoff_base: Seconds | None = Field(None, gt=0)
    backoff_max: Seconds | None = Field(None, gt=0)
    horizon: Seconds | None = Field(None, gt=0)
    max_attempts: int | None = Field(None, ge=1)


@dataclass(frozen=True)
class Decision:
    """Try again at `at` (after `delay` seconds), or give up (`at` is None) for `reason`."""

    at: datetime | None
    delay: float = 0.0
    reason: str = ""

    @property
    def give_up(self) -> bool:
        return self.at is None


class RetryPolicy(BaseModel):
    """How a run that failed in a way that may pass is tried again.

    The delay doubles from `backoff_base` up to `backoff_max`, times a jitter in [0.5, 1) so
    the runs of one outage do not come back together; a `Retry-After` from the remote is a
    floor. The run is given up (`dead`) once `horizon` has passed since its first failure, or
    after `max_attempts` if set. The last try is made at the horizon, not skipped.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backoff_base: Seconds = Field(1.0, gt=0)
    backoff_max: Seconds = Field(600.0, gt=0)
    horizon: Seconds = Field(86400.0, gt=0)
    max_attempts: int | None = Field(None, ge=1)

    def merged(self, *overrides: RetryOverride | None) -> RetryPolicy:
        """This policy with each override's settings laid over it, later ones winning."""
        changes: dict[str, Any] = {}
        for override in overrides:
            if override is not None:
                changes |= override.model_dump(exclude_none=True)
        return self.model_copy(update=changes) if changes else self

    def decide(
        self,
        *,
        attempt: int,
        since: datetime,
        now: datetime,
        retry_after: float | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> Decision:
        """After failed attempt number `attempt` of a run failing since `since`: when next."""
        if self.max_attempts is not None and attempt >= self.max_attempts:
            return Decision(None, reason=f"gave up after {attempt} attempts")
        deadline = since + timedelta(seconds=self.horizon)
        if now >= deadline:
            return Decision(None, reason=f"gave up after {attempt} attempts in {_span(self)}")
        exponent = min(max(attempt - 1, 0), 60)  # 2**60 s is past any cap: no overflow
        delay = min(self.backoff_max, self.backoff_base * 2**exponent)
        delay *= 0.5 + jitter() / 2
        if retry_after is not None:
            delay = max(delay, retry_after)
        at = now + timedelta(seconds=delay)
        if at > deadline:  # one last try, at the horizon
            return Decision(deadline, (deadline - now).total_seconds())
        return Decision(at, delay)


def _span(policy: RetryPolicy) -> str:
    return f"the {timedelta(seconds=round(policy.horizon))} retry horizon"


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
