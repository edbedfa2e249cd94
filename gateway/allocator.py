"""glibc's allocator in a long-running `gateway serve`: fewer arenas, and memory handed back to
the system once a burst of work is over (docs/benchmarks.md, memory).

Every thread that allocates (the SQLite connections' threads, the executor's) gets an arena
of its own from glibc, and freed memory is kept by the process for the next allocation: after
a load, a quiet gateway held ~10 MB it no longer used. Where there is no glibc (musl, macOS)
each function does nothing. `GATEWAY_MALLOC_TUNING=off` turns both off; a `MALLOC_ARENA_MAX`
set in the environment is glibc's own setting and is left to glibc.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable
from functools import cache

# mallopt's parameter number for the arena cap (glibc's malloc.h).
M_ARENA_MAX = -8
# The main arena and one more: the SQLite threads share one instead of one each.
ARENAS = 2
# How often the trimmer looks at the process's CPU time, and what counts as busy or quiet
# (a share of one core over one look).
LOOK_SECONDS = 0.25
BUSY_SHARE = 0.05
QUIET_SHARE = 0.01


@cache
def _glibc() -> ctypes.CDLL | None:
    if os.environ.get("GATEWAY_MALLOC_TUNING", "").lower() in ("off", "0", "false", "no"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018  (glibc's alone: musl and macOS have none)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def cap_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas at `arenas`; before any thread is started. True if it was done."""
    libc = _glibc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give the free memory of every arena back to the system. True if some was."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


class Trimmer:
    """Trims once the process goes quiet after a busy spell: measured by its own CPU time,
    so no request or batch has to report to it, and a gateway under load is never trimmed
    (what is given back would be taken again at once)."""

    def __init__(
        self,
        *,
        look: float = LOOK_SECONDS,
        cpu_time: Callable[[], float] = time.process_time,
        give_back: Callable[[], bool] = trim,
    ) -> None:
        self.look = look
        self.cpu_time = cpu_time
        self.give_back = give_back
        self.trims = 0
        self._busy = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if _glibc() is not None or self.give_back is not trim:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def quiet_after_busy(self, share: float) -> bool:
        """Whether to trim after a look in which the process used `share` of a core."""
        if share >= BUSY_SHARE:
            self._busy = True
            return False
        if self._busy and share < QUIET_SHARE:
            self._busy = False
            return True
        return False

    async def _run(self) -> None:
        last = self.cpu_time()
        while True:
            await asyncio.sleep(self.look)
            now = self.cpu_time()
            share, last = (now - last) / self.look, now
            if self.quiet_after_busy(share):
                self.give_back()
                self.trims += 1
