"""The SQLite worker lock: refused at once while its holder lives; waited for, up to a limit,
while only a dead door's worker processes hold it (they finish their runs, then exit)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.store.lock import WorkerAlreadyRunning, WorkerLock

# Holds the lock file given, as "pid N" says, until its stdin closes.
HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.pwrite(fd, sys.argv[2].encode(), 0)
print("held", flush=True)
sys.stdin.read()
"""


def dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    return int(finished.stdout)


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    holders: list[subprocess.Popen[str]] = []

    def hold(says: str) -> str:
        database = str(tmp_path / "gateway.db")
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, database + ".worker.lock", says],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        holders.append(holder)
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        return database

    yield hold
    for holder in holders:
        holder.communicate()


def test_a_lock_its_live_holder_names_is_refused_at_once(held: Callable[[str], str]) -> None:
    database = held(f"pid {os.getpid()}\n")  # a live process (this one)
    began = time.monotonic()
    with pytest.raises(WorkerAlreadyRunning, match=f"pid {os.getpid()}"):
        WorkerLock(database).acquire(orphans_wait=30)
    assert time.monotonic() - began < 5


def test_a_lock_a_dead_holder_left_is_waited_for_up_to_the_limit(
    held: Callable[[str], str],
) -> None:
    dead = dead_pid()
    database = held(f"pid {dead}\n")  # its door died; "worker processes" still hold it
    began = time.monotonic()
    with pytest.raises(WorkerAlreadyRunning, match=f"pid {dead}"):
        WorkerLock(database).acquire(orphans_wait=0.5)
    assert time.monotonic() - began >= 0.5


def test_a_lock_a_dead_holder_left_is_taken_once_let_go(tmp_path: Path) -> None:
    database = str(tmp_path / "gateway.db")
    fd = os.open(database + ".worker.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, f"pid {dead_pid()}\n".encode(), 0)
    lock = WorkerLock(database)
    # Let go while the other waits (from this process: flock excludes open files).
    threading.Timer(0.3, os.close, [fd]).start()
    lock.acquire(orphans_wait=10)
    lock.release()
