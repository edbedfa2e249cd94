"""`gateway serve --processes N`: the worker (and the scheduler) in N - 1 child processes on
the same store, so the door (this process) and each worker have a core's worth of GIL.

The children are forked after the imports (their pages shared) and before any loop or thread.
A socket pair ties each to the door: a child starts once the door has opened (and migrated)
the store, and each side sees the other's death, `kill -9` included, as the end of the stream.
On SQLite the door takes the worker lock before forking and the children inherit it: held
while any of them lives. The first child starts alone (it resumes the runs left running),
then the others; the scheduler runs in the first only, `worker.concurrency` is split.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn

import structlog

from gateway.config import Config
from gateway.errors import ConfigError
from gateway.runs.shutdown import SIGNALS
from gateway.runtime import Gateway
from gateway.store.lock import WorkerLock
from gateway.store.notify import wait_until_set

log = structlog.get_logger(__name__)

GO = b"g"  # to the child: the store is open
STARTED = b"s"  # to the parent: the worker runs
# Beyond the grace period, how long the parent waits for the child to exit before SIGKILL.
EXIT_MARGIN_SECONDS = 5.0


def worker_roles(behind: frozenset[str], count: int) -> list[frozenset[str]]:
    """The roles of each of `count` worker processes: the scheduler runs in the first only,
    so that a schedule fires once per tick, not once per process."""
    return [behind if n == 0 else behind - {"scheduler"} for n in range(count)]


def shares(concurrency: int, count: int) -> list[int]:
    """`worker.concurrency` split among `count` worker processes: the gateway as a whole runs
    as many runs at once as with one process, whatever `--processes` says."""
    return [concurrency // count + (n < concurrency % count) for n in range(count)]


def fork_workers(
    config: Config, behind: frozenset[str], count: int, lock: WorkerLock | None
) -> list[WorkerProcess]:
    """Fork `count` worker processes running `behind` (each waits for `start`): call before
    any event loop or thread. The first has the scheduler; each gets its share of
    `worker.concurrency`; on SQLite they share the worker `lock`, taken here."""
    if lock is not None:
        lock.acquire()
    workers: list[WorkerProcess] = []
    try:
        roles = worker_roles(behind, count)
        for n, share in enumerate(shares(config.worker.concurrency, count)):
            worker = config.worker.model_copy(update={"concurrency": share})
            process = WorkerProcess(
                config.model_copy(update={"worker": worker}), roles[n], first=n == 0
            )
            process.fork(siblings=workers, lock_inherited=lock is not None)
            workers.append(process)
    finally:
        if lock is not None:
            lock.hand_over()
    workers[0].followers = workers[1:]
    return workers


class WorkerProcess:
    """A child process running `roles` (worker, scheduler) for the door in this process.

    A `gateway.runtime.Companion` of the door's gateway: started with it (the child then
    opens the store), told of SIGTERM (it drains as the door does), of each rule reload, and
    stopped with it. If the child dies on its own, /readyz says so and `on_gone` runs (the
    serve command stops the door and exits non-zero, for the supervisor to restart them all).
    """

    def __init__(self, config: Config, roles: frozenset[str], *, first: bool = True) -> None:
        self.config = config
        self.roles = roles
        # Started (and resuming the runs left running) before its siblings, `followers`, are
        # let go: they must not claim before it has taken over what was running.
        self.first = first
        self.followers: list[WorkerProcess] = []
        self.pid: int | None = None
        self.on_gone: Callable[[], None] = lambda: None
        self.failed = False  # died on its own, not asked to stop
        self._channel: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._alive = False
        self._stopping = False
        self._reaped = False
        self._started = False
        self._ended = asyncio.Event()

    def attach(self, gateway: Gateway) -> None:
        gateway.companions.append(self)
        gateway.shutdown.on_begin.append(self.terminate)

    def fork(self, *, siblings: Sequence[WorkerProcess] = (), lock_inherited: bool = False) -> None:
        """Fork the child (it waits for `start`): call before any event loop or thread.
        `lock_inherited`: the SQLite worker lock is held, and the child inherits it."""
        parent_end, child_end = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            parent_end.close()
            for sibling in siblings:  # else the door's death would not end their streams
                if sibling._channel is not None:
                    sibling._channel.close()
            _child(self.config, self.roles, child_end, first=self.first, inherited=lock_inherited)
        child_end.close()
        self.pid, self._channel, self._alive = pid, parent_end, True
        log.info("worker_process.forked", pid=pid, roles=sorted(self.roles))

    # ------------------------------------------------------------------ Companion

    async def start(self) -> None:
        """The store is open and migrated: watch the child, and let it open the store too if
        it is the first (the others go once it has started)."""
        self._watch()
        if self.first:
            self._go()

    def _go(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(OSError):  # already gone: the end of the stream says so
                self._channel.send(GO)

    def unready(self) -> str | None:
        if not self._alive:
            return "worker process gone"
        return None if self._started else "worker process starting"

    def reload(self) -> None:
        """The door reloaded its rules (SIGHUP or the admin API): the worker reloads its own."""
        self._signal(signal.SIGHUP)

    def terminate(self) -> None:
        """SIGTERM to the child: it drains within the same grace period as the door."""
        self._stopping = True
        self._signal(signal.SIGTERM)

    async def stop(self, grace: float) -> None:
        """Stop the child (SIGTERM) and wait for it: `grace` and a margin, then SIGKILL."""
        self.terminate()
        if self._channel is not None:
            self._watch()
        if not await wait_until_set(self._ended, grace + EXIT_MARGIN_SECONDS):
            log.error("worker_process.killed", pid=self.pid, after=round(grace, 3))
            self._signal(signal.SIGKILL)
            await self._ended.wait()
        self._reap(block=True)

    # ------------------------------------------------------------------ the child's death

    def _watch(self) -> socket.socket:
        channel = self._channel
        if channel is None:
            raise RuntimeError("the worker process was not forked")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            channel.setblocking(False)
            self._loop.add_reader(channel.fileno(), self._readable)
        return channel

    def _readable(self) -> None:
        channel = self._channel
        if channel is None:
            return
        try:
            if channel.recv(16):
                self._started = True
                for follower in self.followers:
                    follower._go()
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self._close()
        self._alive = False
        self._ended.set()
        if self._stopping:
            return
        self.failed = True
        log.error("worker_process.gone", pid=self.pid)
        self.on_gone()

    def _close(self) -> None:
        if self._channel is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._channel.fileno())
            self._channel.close()
            self._channel = None

    def _signal(self, sig: int) -> None:
        # Never once reaped: its pid may belong to another process by then.
        if self.pid is not None and not self._reap():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def _reap(self, *, block: bool = False) -> bool:
        """Whether the child has exited (collected, so no zombie is left); `block`: wait for
        it (its stream has ended: it is exiting)."""
        if self._reaped or self.pid is None:
            return True
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return False
        self._reaped, self._alive = True, False
        log.info("worker_process.exited", pid=self.pid, status=os.waitstatus_to_exitcode(status))
        return True


# ---------------------------------------------------------------------- in the child


def _child(
    config: Config, roles: frozenset[str], channel: socket.socket, *, first: bool, inherited: bool
) -> NoReturn:
    """The forked child's whole life: serve `roles` until told to stop, then exit."""
    code = 1
    try:
        code = _run(_serve(config, roles, channel, first=first, inherited=inherited))
    except BaseException:
        log.exception("worker_process.failed")
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)  # not the parent's atexit handlers, nor its buffers again


def _run(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def _serve(
    config: Config, roles: frozenset[str], channel: socket.socket, *, first: bool, inherited: bool
) -> int:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    gateway = Gateway(config)
    gateway.lock_inherited, gateway.resumes_runs = inherited, first

    def stop() -> None:
        gateway.shutdown.begin()
        done.set()

    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop)
    # A reload asked for while starting (its default would kill the child) is done once started.
    hangups: list[int] = []
    loop.add_signal_handler(signal.SIGHUP, lambda: hangups.append(1))
    channel.setblocking(False)
    go = asyncio.ensure_future(loop.sock_recv(channel, 1))
    stopped = asyncio.ensure_future(done.wait())
    await asyncio.wait({go, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not go.done() or go.result() != GO:
        go.cancel()
        return 0  # stopped, or the parent died, before its store was open
    # The parent has migrated the store: two processes migrating at once would race.
    await gateway.start(roles, migrate=False)
    unhook = gateway.reload_on_hangup()
    if hangups:
        with contextlib.suppress(ConfigError):  # refused and logged: the rules stay
            await gateway.reload_rules()

    def parent_gone() -> None:
        with contextlib.suppress(BlockingIOError):
            if not channel.recv(16):
                loop.remove_reader(channel.fileno())
                log.warning("worker_process.parent_gone")
                stop()

    loop.add_reader(channel.fileno(), parent_gone)
    with contextlib.suppress(OSError):  # gone: `parent_gone` says so
        channel.send(STARTED)
    log.info("worker_process.started", roles=sorted(roles))
    try:
        await done.wait()
    finally:
        unhook()
        await gateway.stop()
    return 0
