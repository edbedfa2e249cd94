"""Taking turns at a SQLite file's one write lock: `flock` on a file beside the database.

SQLite lets one writer in at a time; a writer that finds the lock taken waits in its busy
handler, which sleeps 1, 2, 5, ... up to 100 ms between tries. Under a stream of the door's
commits a second writer (the worker's journal, in the same process or another) kept losing:
in bench/writers it made 35-79 commits/s beside the door, p99 0.3-0.5 s, and in bench/sustain
the worker fell behind with a third of the machine idle. Writers that hold the gate while
they write are woken by the kernel the moment the holder lets go, and alternate.

The two hot writers take it: the event writer's thread (`ingest.sqlite`) and the journal's
thread (`batching.Journal`). Rare writes (migrations, schedules, retention) do not; one of
them meeting a gated writer waits in SQLite's busy handler as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator


class WriteGate:
    """`<database>.write.lock`, held with `flock` around each write transaction.

    One gate per writer: `flock` excludes open files, not processes or threads, so two
    writers sharing one descriptor would not exclude each other. The file is opened on first
    use in each process: a descriptor inherited across `fork` would be shared with the parent.
    """

    def __init__(self, database: str) -> None:
        self.path = database + ".write.lock"
        self._fd: int | None = None
        self._pid = 0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fd = self._open()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def _open(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._pid = os.getpid()
        return self._fd
