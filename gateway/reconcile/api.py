"""Calling a provider's API the way reconciliation must: rate limits and errors honoured.

One loop for every call: a 429, a 403 that is GitHub's rate limit (primary or secondary), or
a 5xx waits as the answer says (`gateway.backoff`, the project's one `Retry-After` parser) or
with backoff, at most `max_tries` times, never longer than `max_wait` at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from gateway.backoff import backoff, retry_after

# Defined in gateway.errors (the whole tree in one module), imported from here too.
from gateway.errors import ProviderApiError as ProviderApiError
from gateway.errors import ProviderBusy as ProviderBusy

T = TypeVar("T")

# Backoff of a 5xx or a rate limit that names no wait: 1 s doubling, jittered.
BACKOFF_BASE = 1.0


def rate_limit_wait(status: int, headers: Mapping[str, str], now: float) -> float | None:
    """Seconds a 403/429 asks to wait, or None when it is not a rate limit at all (a 403 that
    is a refusal). `Retry-After` first (GitHub's secondary limits, Stripe's 429), then GitHub's
    `x-ratelimit-reset` when `x-ratelimit-remaining` is 0; a bare 429 backs off (0.0 here)."""
    asked = retry_after(headers)
    if asked is not None:
        return asked
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            return max(float(headers["x-ratelimit-reset"]) - now, 0.0)
        except ValueError:
            pass
    return 0.0 if status == 429 else None


async def patiently(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    max_tries: int,
    max_wait: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """`call()` until it returns, retrying what raises `ProviderBusy`; `ProviderApiError` when
    the tries are spent or a wait would be longer than `max_wait`."""
    for attempt in range(max_tries):
        try:
            return await call()
        except ProviderBusy as exc:
            if attempt + 1 >= max_tries:
                raise ProviderApiError(
                    f"{what}: {exc} (gave up after {max_tries} tries)", exc.status
                ) from None
            wait = exc.wait or backoff(attempt, base=BACKOFF_BASE, ceiling=max_wait)
            if wait > max_wait:
                raise ProviderApiError(
                    f"{what}: asked to wait {wait:.0f} s, over the {max_wait:.0f} s limit "
                    "(max_wait); the next run tries again",
                    exc.status,
                ) from None
            await sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
