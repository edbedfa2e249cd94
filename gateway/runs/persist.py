"""Committing a call's result, retried: a database blip right after a call that succeeded
must not leave the step `started`, for the call to be made again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Waits between tries of the commit: about 15 s in all, under the 30 s lease (renewed meanwhile),
# long enough for a PostgreSQL failover or restart to be over.
COMMIT_RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 7.0)


async def persist(
    write: Callable[[], Awaitable[T]],
    *,
    delays: Sequence[float] = COMMIT_RETRY_DELAYS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """`write()`, tried again after each of `delays` while it raises; the last error if all fail.

    Only for changes that are safe to repeat: a failed transaction was rolled back whole.
    """
    for delay in delays:
        try:
            return await write()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("step.commit_retry", error=str(exc), delay=delay)
            await sleep(delay)
    return await write()
