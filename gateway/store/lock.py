"""The one-worker rule of SQLite: an exclusive lock file beside the database.

SQLite has a single writer and no `SKIP LOCKED`, and a worker starting there takes over every
running run, so a second worker on the same file must refuse to start. The worker processes
of one `gateway serve --processes N` are one worker to this rule: the door takes the lock and
they inherit it (`hand_over`), the first of them alone taking over what was running.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

import structlog

# Defined in gateway.errors (the whole tree in one module), imported from here too.
from gateway.errors import WorkerAlreadyRunning as WorkerAlreadyRunning

log = structlog.get_logger(__name__)

# How often a lock left to a dead holder's worker processes is tried again.
ORPHANS_POLL_SECONDS = 0.1


class WorkerLock:
    """`<database>.worker.lock`, held with `flock` while the worker runs.

    The kernel releases it when the process dies (the last of the processes sharing it), even
    by `kill -9`: no stale lock to clean up.
    """

    def __init__(self, database: str) -> None:
        self.database = database
        self.path = Path(database + ".worker.lock")
        self._fd: int | None = None

    def acquire(self, *, orphans_wait: float = 0.0) -> None:
        """Take the lock, or raise `WorkerAlreadyRunning` naming its holder.

        With `orphans_wait`, a lock whose recorded holder is dead is waited for, up to that
        many seconds: a `gateway serve --processes N` whose door was killed leaves its worker
        processes holding it while they finish their runs (up to `shutdown_grace`), and a
        gateway started meanwhile (a supervisor's restart) should follow them, not fail.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline, said = time.monotonic() + orphans_wait, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                if time.monotonic() < deadline and _dead(holder):
                    if not said:
                        log.warning("worker_lock.orphaned", holder=holder, wait=orphans_wait)
                        said = True
                    time.sleep(ORPHANS_POLL_SECONDS)
                    continue
                os.close(fd)
                raise WorkerAlreadyRunning(self.database, holder or "unknown process") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        self._fd = fd

    def hand_over(self) -> None:
        """Close this process's descriptor, leaving the lock to the children forked while it
        was held: they share it, and the kernel drops it when the last of them exits."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor drops the lock
        self._fd = None


def _dead(holder: str) -> bool:
    """Whether the holder a lock file names ("pid N", the process that took it) is gone."""
    _, _, number = holder.partition("pid ")
    if not number.strip().isdigit():
        return False
    try:
        os.kill(int(number), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
