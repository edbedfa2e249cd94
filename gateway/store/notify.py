"""Cross-replica wake-ups on PostgreSQL: `NOTIFY gateway_work` after new work is committed.

Each replica listens on a dedicated connection (reconnecting with backoff) and wakes its worker;
the worker's slow poll remains only as the fallback for a notification lost while disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.engine import make_url

from gateway.store.database import async_url

if TYPE_CHECKING:
    import asyncpg  # type: ignore[import-untyped]

log = structlog.get_logger(__name__)

CHANNEL = "gateway_work"
# A connection that the server dropped without a word (a network cut) is found by a ping.
KEEPALIVE_SECONDS = 15.0


def asyncpg_dsn(url: str) -> str:
    """The plain libpq-style URL asyncpg takes, from a gateway store URL."""
    parsed = make_url(async_url(url))
    if not parsed.drivername.startswith("postgresql"):
        raise ValueError(f"LISTEN/NOTIFY needs PostgreSQL, not {parsed.drivername}")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


async def _connect(dsn: str) -> Any:
    """A plain asyncpg connection; asyncpg is imported by PostgreSQL stores only (~10 MB)."""
    import asyncpg

    return await asyncpg.connect(dsn, timeout=10)


async def wait_until_set(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event`, at most `seconds`; whether it is set.

    Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives just after
    the event fired, so a loop cancelled by `stop()` would run on for ever.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


async def wait_for_work(event: asyncio.Event, due: datetime | None, longest: float) -> None:
    """Wait until `event` is set or the next item of a queue is `due`, at most `longest` seconds
    (the fallback poll), then clear `event`: the idle step of every claiming loop."""
    seconds = longest
    if due is not None:
        seconds = min(longest, max(0.0, (due - datetime.now(UTC)).total_seconds()))
    await wait_until_set(event, seconds)
    event.clear()


def wake(callback: Callable[[], None]) -> None:
    """A listener's callback, whose failure is logged: the listening goes on."""
    try:
        callback()
    except Exception:
        log.exception("notify.callback_failed")


class Notifier:
    """Sends and receives the wake-up notifications of one store.

    `notify()` is best effort: a lost notification only delays work until the fallback poll,
    so it never raises. Notifications sent by this notifier do not wake its own listener (the
    process has woken its worker already).
    """

    def __init__(
        self,
        url: str,
        channel: str = CHANNEL,
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self.channel = channel
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._callback: Callable[[], None] = lambda: None
        self._task: asyncio.Task[None] | None = None
        self._listening: asyncpg.Connection | None = None
        self._listening_changed = asyncio.Event()
        self._sender: asyncpg.Connection | None = None
        self._sender_lock = asyncio.Lock()
        self._sending: asyncio.Task[None] | None = None
        self._again = False
        self._stopped = False

    # ------------------------------------------------------------------ listening

    def start(self, callback: Callable[[], None]) -> None:
        """Listen in the background; `callback` runs on each notification from another
        connection, and after each (re)connection, since notifications may have been missed.
        """
        self._callback = callback
        self._stopped = False
        self._task = asyncio.create_task(self._listen(), name="notify-listener")

    async def stop(self) -> None:
        self._stopped = True  # a commit during shutdown needs no wake-up sent
        for task in (self._task, self._sending):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._sending = None
        for conn in (self._listening, self._sender):
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
        self._listening = self._sender = None

    async def listening(self, *, other_than: int | None = None) -> int:
        """Wait until the listener is connected (on a backend other than `other_than`);
        returns the backend's process id.
        """
        while True:
            conn = self._listening
            if conn is not None and not conn.is_closed():
                pid = int(conn.get_server_pid())
                if pid != other_than:
                    return pid
            self._listening_changed.clear()
            await self._listening_changed.wait()

    async def _listen(self) -> None:
        # Imported by the listener, which only PostgreSQL stores start: stamina and tenacity
        # are 0.7 MB resident a gateway on SQLite need not keep (docs/benchmarks.md, memory).
        import stamina

        while True:
            # Backoff from min to max while the connection fails; over again once it was up.
            async for attempt in stamina.retry_context(
                on=_listen_failed,
                attempts=None,
                timeout=None,
                wait_initial=self._min_backoff,
                wait_max=self._max_backoff,
                wait_jitter=self._min_backoff,
            ):
                with attempt:
                    await self._session()
            log.warning("notify.connection_lost", channel=self.channel)
            await asyncio.sleep(self._min_backoff * (0.5 + random.random() / 2))

    async def _session(self) -> None:
        """One connection: listen until the server or the network drops it."""
        conn = await _connect(self._dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(self.channel, self._received)
            self._set_listening(conn)
            log.info("notify.listening", channel=self.channel)
            self._wake()
            while not lost.is_set():
                await wait_until_set(lost, KEEPALIVE_SECONDS)
                if not lost.is_set():
                    await conn.execute("SELECT 1", timeout=5)
        finally:
            self._set_listening(None)
            if not conn.is_closed():
                conn.terminate()

    def _set_listening(self, conn: asyncpg.Connection | None) -> None:
        self._listening = conn
        self._listening_changed.set()

    def _received(self, _conn: object, pid: int, _channel: str, _payload: object) -> None:
        sender = self._sender
        if sender is not None and not sender.is_closed() and sender.get_server_pid() == pid:
            return
        self._wake()

    def _wake(self) -> None:
        wake(self._callback)

    # ------------------------------------------------------------------ sending

    async def notify(self) -> None:
        """Tell every listening replica that there is new work."""
        async with self._sender_lock:
            try:
                if self._sender is None or self._sender.is_closed():
                    self._sender = await _connect(self._dsn)
                await self._sender.execute("SELECT pg_notify($1, '')", self.channel, timeout=5)
            except Exception as exc:
                log.warning("notify.send_failed", error=str(exc))
                if self._sender is not None:
                    self._sender.terminate()
                    self._sender = None

    def notify_soon(self, *_: object) -> None:
        """`notify()` from synchronous code (a commit callback), coalescing bursts: while one
        notification is being sent, any number of calls add up to one more.
        """
        if self._stopped:
            return
        if self._sending is not None and not self._sending.done():
            self._again = True
            return
        self._sending = asyncio.get_running_loop().create_task(self._send_coalesced())

    async def _send_coalesced(self) -> None:
        while True:
            self._again = False
            await self.notify()
            if not self._again:
                return


def _listen_failed(exc: BaseException) -> bool:
    """Whether stamina tries again: after any failure to listen (logged), never after a
    cancellation (`stop`), which stamina would otherwise hand here too."""
    if not isinstance(exc, Exception):
        return False
    log.warning("notify.listen_failed", error=str(exc))
    return True
