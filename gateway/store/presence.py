"""A replica's presence on PostgreSQL: a session-level advisory lock on a connection of its own,
which the server releases the moment the replica's process or connection dies.

Every second each replica looks for runs held by an owner whose lock is gone and ends their
leases, so another replica takes them over in about a second, not when a 30 s lease runs out.
Only owners marked present (`+p`) are judged so: a replica of an earlier version holds no
lock, and its runs wait for their lease as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from gateway.store.notify import KEEPALIVE_SECONDS, asyncpg_dsn, wait_until_set

log = structlog.get_logger(__name__)

# The advisory lock namespace of replica presence (ordering keys use 1734440037).
NAMESPACE = 1734440038
MARK = "+p"
# How often a replica looks for the runs of replicas that are gone.
CHECK_SECONDS = 1.0
# A replica that cannot take its lock this soon after the store opened does not start.
START_SECONDS = 30.0


class Presence:
    """Holds this replica's lock, and hands over the runs of replicas that lost theirs."""

    def __init__(
        self,
        url: str,
        owner: str,
        release_orphans: Callable[[], Awaitable[int]],
        *,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self.owner = owner + MARK
        self._release_orphans = release_orphans
        self._check_seconds = check_seconds
        self._held = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.on_takeover: Callable[[int], None] = lambda count: None

    async def start(self) -> None:
        """Take the lock (before the worker claims anything), then keep it and watch others."""
        self._tasks = [
            asyncio.create_task(self._hold(), name="presence-lock"),
            asyncio.create_task(self._watch(), name="presence-watch"),
        ]
        async with asyncio.timeout(START_SECONDS):
            await self._held.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _hold(self) -> None:
        while True:
            try:
                await self._session()
                log.warning("presence.lost", owner=self.owner)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("presence.failed", owner=self.owner, error=str(exc))
            self._held.clear()
            await asyncio.sleep(0.5)

    async def _session(self) -> None:
        import asyncpg  # type: ignore[import-untyped]  # PostgreSQL only: ~10 MB resident

        conn = await asyncpg.connect(self._dsn, timeout=10)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", NAMESPACE, self.owner)
            self._held.set()
            log.info("presence.held", owner=self.owner)
            while not lost.is_set():
                await wait_until_set(lost, KEEPALIVE_SECONDS)
                if not lost.is_set():
                    await conn.execute("SELECT 1", timeout=5)
        finally:
            if not conn.is_closed():
                with contextlib.suppress(Exception):
                    conn.terminate()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._check_seconds)
            if not self._held.is_set():
                continue  # without our own lock we may not judge (nor be sure of) others
            try:
                count = await self._release_orphans()
            except Exception as exc:  # the store is down: look again next time
                log.warning("presence.check_failed", error=str(exc))
                continue
            if count:
                log.warning("presence.takeover", runs=count)
                self.on_takeover(count)
