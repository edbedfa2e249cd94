"""Retry settings: the `retry:` policy, its overrides per tool and per rule, the circuits, and
durations written as `10m`. Models only: `gateway.runs.policy` decides from them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Protocol

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


class RetryPolicy(BaseModel):
    """How a run that failed in a way that may pass is tried again (`gateway.runs.policy`).

    The delay doubles from `backoff_base` up to `backoff_max`, with jitter; the run is dead
    once `horizon` has passed since its first failure, or after `max_attempts` if set. The
    defaults outlast an outage as the senders do (Shopify retries for 4 h, Stripe for 3 days).
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


class CircuitSettings(BaseModel):
    """`retry.circuit`: when a downstream's circuit opens and how long until a probe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Retryable failures in a row, across runs, that open a downstream's circuit.
    failures: int = Field(5, ge=1)
    # Wait before the first probe; doubles with each failed probe up to `open_max`.
    open_for: Seconds = Field(30.0, gt=0)
    open_max: Seconds = Field(600.0, gt=0)


class OlderSettings(Protocol):
    """The `worker:` settings that named retry settings before `retry:` (they still win)."""

    max_attempts: int | None
    backoff_base: float | None
    backoff_max: float | None


class RetryConfig(RetryPolicy):
    """`retry:` the default retry policy, overrides per tool or tool family, the circuits."""

    tools: dict[str, RetryOverride] = Field(default_factory=dict)
    circuit: CircuitSettings = Field(default_factory=CircuitSettings)

    def default(self, worker: OlderSettings) -> RetryPolicy:
        """The default policy, with the older `worker:` settings (when given) over it."""
        legacy = RetryOverride(
            max_attempts=worker.max_attempts,
            backoff_base=worker.backoff_base,
            backoff_max=worker.backoff_max,
        )
        return RetryPolicy(**self.model_dump(include=set(RetryPolicy.model_fields))).merged(legacy)
