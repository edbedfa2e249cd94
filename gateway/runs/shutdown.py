"""Graceful shutdown: on SIGTERM readiness fails and webhooks are refused at once, no more work
is claimed, and calls in flight get `shutdown_grace` to finish and journal their results.

Only what still runs when the grace period ends is cut off, to resume (same key) elsewhere.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import structlog
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.runs.circuit import RunParking

log = structlog.get_logger(__name__)

# What a run handed over at a step boundary says while it waits to be claimed again.
HANDED_OVER = "handed over: its replica was shutting down"
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Shutdown:
    """The moment a SIGTERM arrived, and what it sets in motion (`on_begin` callbacks)."""

    def __init__(self, grace: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self._clock = clock
        self.began: float | None = None
        self.on_begin: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, Any] = {}

    @property
    def draining(self) -> bool:
        return self.began is not None

    def left(self) -> float:
        """Seconds of the grace period still left (all of it before a signal)."""
        if self.began is None:
            return self.grace
        return max(0.0, self.grace - (self._clock() - self.began))

    def begin(self) -> None:
        """Start draining (once): from the loop's thread, or from a signal handler."""
        if self.began is not None:
            return
        self.began = self._clock()
        log.info("gateway.draining", grace=self.grace)
        for callback in self.on_begin:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(callback)
            else:
                callback()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin on SIGTERM or SIGINT, then let the server's own handler (uvicorn's) stop it.
        Only in the main thread, where signals are delivered."""
        self._loop = loop
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, sig: int, frame: FrameType | None) -> None:
        self.begin()
        previous = self._previous.get(sig)
        if callable(previous):
            previous(sig, frame)


async def drain(active: Mapping[int, asyncio.Task[None]], grace: float) -> int:
    """Let the runs in `active` finish for up to `grace` seconds; how many are still running."""
    tasks = list(active.values())
    if not tasks or grace <= 0:
        return len(tasks)
    log.info("worker.draining", runs=len(tasks), grace=round(grace, 3))
    _, left = await asyncio.wait(tasks, timeout=grace)
    if left:
        log.warning("worker.grace_exceeded", runs=len(left))
    return len(left)


async def hand_over(runs: RunParking, run_id: int) -> None:
    """A draining worker's run at a step boundary: due again now, for whichever worker claims
    it next, with no attempt spent."""
    await runs.wait(run_id, datetime.now(UTC), HANDED_OVER)


class RefuseWhenDraining:
    """`endpoint` (webhook ingest), answering 503 once draining: the sender delivers again,
    to a replica that stays. An ASGI app, not a function, so Starlette routes it as one."""

    def __init__(self, shutdown: Shutdown, endpoint: ASGIApp) -> None:
        self.shutdown = shutdown
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.shutdown.draining:
            response = PlainTextResponse(
                "shutting down", status_code=503, headers={"Retry-After": "1"}
            )
            await response(scope, receive, send)
            return
        await self.endpoint(scope, receive, send)
