"""Cross-process wake-ups on SQLite: one Unix datagram per committed batch to every worker.

Each listening process binds `<database>.wake/<pid>.sock`; a process that commits new work
sends one best-effort datagram to every other socket there. A lost datagram only delays the
work until the worker's fallback poll, as a lost NOTIFY does on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from gateway.store.notify import wake

log = structlog.get_logger(__name__)

SUFFIX = ".sock"
# The kernel's limit on a socket path is 108 bytes; longer ones go through the folder's fd.
SHORT_PATH = 100
# How long a listing of the sockets is trusted without looking again: a folder's mtime ticks
# with the kernel's coarse clock, so a socket bound in the tick just listed could be missed.
RELIST_SECONDS = 1.0
# A listener wakes at once after a quiet spell, then at most once per this many seconds while
# wake-ups keep coming. Each wake costs the worker a scan and write transactions on the one
# SQLite file the door commits to, so a stream is cheaper in larger batches; but a longer
# interval also holds back a trickle of events, each arriving within it (docs/benchmarks.md).
WAKE_INTERVAL_SECONDS = 0.05


class SocketNotifier:
    """Sends and receives the wake-up datagrams of the SQLite store at `database`.

    The same surface as the PostgreSQL `Notifier` (`gateway.store.abc.WakeUps`): `start`
    listens, `notify_soon` tells every other listening process, never blocking and never
    raising; a process's own datagrams do not wake it (its worker was woken in-process).
    """

    def __init__(
        self,
        database: str,
        *,
        name: str | None = None,
        wake_interval: float = WAKE_INTERVAL_SECONDS,
    ) -> None:
        self.folder = Path(database + ".wake")
        # One listener per process (one worker per SQLite file; tests give names of their own).
        self.name = f"{name or os.getpid()}{SUFFIX}"
        self._folder_fd: int | None = None
        self._listener: socket.socket | None = None
        self._sender: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._callback: Callable[[], None] = lambda: None
        self._targets: list[str] = []
        self._listed: tuple[int, float] | None = None  # (folder mtime, when listed)
        self._stopped = False
        self.wake_interval = wake_interval
        self._woken_at = float("-inf")
        self._deferred: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ listening

    def start(self, callback: Callable[[], None]) -> None:
        """Bind this process's socket (removing sockets of processes gone) and call
        `callback` on each datagram, and once now: work may have come before the socket."""
        self._callback = callback
        self._stopped = False
        self._open_folder()
        self._remove_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        own = self._address(self.name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(own)  # a socket left by an earlier process with this pid
        listener.bind(own)
        listener.setblocking(False)
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(listener.fileno(), self._readable)
        log.info("notify.listening", socket=str(self.folder / self.name))
        self._wake()

    async def stop(self) -> None:
        self._stopped = True
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        if self._listener is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                os.unlink(self._address(self.name))
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        if self._folder_fd is not None:
            os.close(self._folder_fd)
            self._folder_fd = None

    def _readable(self) -> None:
        listener = self._listener
        if listener is None:
            return
        with contextlib.suppress(OSError):  # drained: one wake-up for however many arrived
            while True:
                listener.recv(16)
        if self._deferred is not None or self._loop is None:
            return  # a wake-up is already due
        wait = self._woken_at + self.wake_interval - self._loop.time()
        if wait <= 0:
            self._wake_now()
        else:
            self._deferred = self._loop.call_later(wait, self._wake_now)

    def _wake_now(self) -> None:
        self._deferred = None
        if self._loop is not None:
            self._woken_at = self._loop.time()
        self._wake()

    def _wake(self) -> None:
        wake(self._callback)

    def _remove_stale(self) -> None:
        """Unlink the sockets nobody is bound to (their process died without a word)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            for name in self._names():
                try:
                    probe.connect(self._address(name))
                except ConnectionRefusedError:
                    with contextlib.suppress(OSError):
                        os.unlink(self._address(name))
                    log.info("notify.stale_socket_removed", socket=name)
                except OSError:
                    pass

    # ------------------------------------------------------------------ sending

    async def notify(self) -> None:
        self.notify_soon()

    def notify_soon(self, *_: object) -> None:
        """One datagram to every other listening process, now; never blocks, never raises
        (a full queue already holds a wake-up, a dead listener is skipped)."""
        if self._stopped:
            return
        try:
            targets = self._current_targets()
            if not targets:
                return
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            for name in targets:
                with contextlib.suppress(OSError):
                    self._sender.sendto(b"w", self._address(name))
        except Exception as exc:  # never fail the commit that called this
            log.warning("notify.send_failed", error=str(exc))

    def _current_targets(self) -> list[str]:
        try:
            mtime = os.stat(self.folder).st_mtime_ns
        except FileNotFoundError:
            return []
        now = time.monotonic()
        listed = self._listed
        if listed is None or listed[0] != mtime or now - listed[1] > RELIST_SECONDS:
            self._open_folder()
            self._targets = [n for n in self._names() if n != self.name]
            self._listed = (mtime, now)
        return self._targets

    # ------------------------------------------------------------------ the folder

    def _open_folder(self) -> None:
        if self._folder_fd is None:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            self._folder_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)

    def _names(self) -> list[str]:
        try:
            return [n for n in os.listdir(self.folder) if n.endswith(SUFFIX)]
        except FileNotFoundError:
            return []

    def _address(self, name: str) -> str:
        path = str(self.folder / name)
        if len(path.encode()) < SHORT_PATH or self._folder_fd is None:
            return path
        return f"/proc/self/fd/{self._folder_fd}/{name}"
