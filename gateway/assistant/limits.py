"""The limits of one assistant run (`assistant.limits`): model turns, tokens, cost, invalid
calls and wall time, checked before every model turn; the first one reached ends the run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateway.rules.model import Limits
from gateway.store import Run

if TYPE_CHECKING:
    from gateway.assistant.container import Interpreter


def over_limit(
    limits: Limits,
    run: Run,
    turns: int,
    tokens: int,
    spent: float,
    invalid: int,
    hosted: Interpreter | None = None,
) -> str | None:
    """The limit this run has reached, worded for its error, or None; `spent` is the model's,
    a hosted code interpreter adds its container's cost and time."""
    if hosted is not None:
        spent += hosted.cost
        if over := hosted.over_time():
            return over
    if turns >= limits.steps:
        return f"{turns} model turns (limit {limits.steps})"
    if limits.tokens is not None and tokens >= limits.tokens:
        return f"{tokens} tokens (limit {limits.tokens})"
    if limits.cost is not None and spent >= limits.cost:
        return f"cost {spent:.4f} (limit {limits.cost})"
    if invalid > limits.invalid_calls:
        return f"{invalid} invalid or refused calls (limit {limits.invalid_calls})"
    if limits.seconds is not None and run.started_at is not None:
        elapsed = (datetime.now(UTC) - run.started_at).total_seconds()
        if elapsed >= limits.seconds:
            return f"{elapsed:.0f} s of wall time (limit {limits.seconds:.0f} s)"
    return None
