"""Waiting before trying again: the server's `Retry-After`, and exponential backoff with jitter.

One parser and one backoff for the tools, the model backends and the worker's run retries;
in-process retry loops use `stamina` with the same numbers.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta-seconds or an HTTP date), or None if it
    is absent or not one (negative, not finite, not a date). A date passed means no wait."""
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None or _is_number(value):
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a response asks the client to wait: `retry-after-ms` (OpenAI's, in milliseconds)
    if it holds a number, else `retry-after`; None if neither says."""
    milliseconds = _seconds(headers.get("retry-after-ms") or "")
    if milliseconds is not None:
        return milliseconds / 1000
    return parse_retry_after(headers.get("retry-after"))


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _seconds(value: str) -> float | None:
    """A finite, non-negative number, or None."""
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def backoff(attempt: int, *, base: float, ceiling: float) -> float:
    """The wait before try `attempt + 1`: `base * 2**attempt`, at most `ceiling`, jittered into
    its upper half so that many callers throttled together do not return together."""
    top = min(ceiling, base * 2**attempt)
    return random.uniform(top / 2, top)
