"""Taking turns at a SQLite file's one write lock: `flock` on files beside the database.

SQLite lets one writer in at a time; a writer that finds the lock taken waits in its busy
handler, which sleeps 1, 2, 5, ... up to 100 ms between tries. Beside the door's stream of
commits the worker's journal lost for up to a second (bench/writers: 55-430 journal commits/s,
max 54-1,133 ms), and in bench/sustain the door's p99 reached 2.3 s with a third of the
machine idle. Writers of one process take turns in the order they asked (a ticket lock,
no polling); across processes they try a flock turnstile every 50-200 us and alternate
(bench/writers: 665-834 journal commits/s beside the door, max 8-19 ms). Either way a writer
gives up after 10 s, as SQLite's busy_timeout would.

The two hot writers take turns: the journal's thread (`batching.Journal`) holds the gate
around each transaction; the event writer's thread (`ingest.sqlite`), whose write is one
call into SQLite, waits for its turn and lets the gate go before that call (`turn`). SQLite
takes and lets go of its own lock inside the call, without the GIL; held around the call, the
gate was let go only once the writer had the GIL back from the event loop (125 us per event
against SQLite's 45). So a writer whose turn it is may still find SQLite's lock taken for the
length of one such call: gated writers use connections that do not sleep in SQLite's busy
handler (`NO_BUSY_WAIT`) and try again after the same short pauses (`begin_immediate`,
`until_not_busy`). Rare writes (migrations, schedules, retention) take no turn; one of them
meeting a gated writer waits in SQLite's busy handler as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from gateway.errors import StoreUnavailable

# How long a writer waits for the gate before the store counts as unavailable: SQLite's own
# busy_timeout (a writer frozen mid-commit, a `gateway` process stopped by a debugger).
WAIT_SECONDS = 10.0
# Tries of a taken lock: the first after this long, then twice as long each time, up to the
# last. flock has no timeout; a blocking one cannot be given up. These pauses are a small
# part of a commit (0.2-1 ms), so a waiter takes the gate within about one pause of its
# release (bench/writers).
FIRST_PAUSE_SECONDS = 0.00005
LAST_PAUSE_SECONDS = 0.0002

T = TypeVar("T")

Observer = Callable[[float, float], None]
"""Told of each turn: seconds waited for the gate, seconds it was held (the writer's thread)."""


class WriteGate:
    """`<database>.write.lock`, held with `flock` around each write transaction, entered
    through the turnstile `<database>.write.queue`.

    The turnstile makes writers alternate: a writer takes the queue, then the gate, then
    lets the queue go. A writer that just let the gate go and wants it again must take the
    queue first, which the writer waiting for the gate holds, so it comes after that one.
    The gate alone let the door, committing back to back, take it again before the woken
    waiter ran (bench/writers).

    One gate per writer: `flock` excludes open files, not processes or threads, so two
    writers sharing one descriptor would not exclude each other. The files are opened on
    first use in each process: a descriptor inherited across `fork` would be the parent's.
    """

    def __init__(self, database: str, *, wait: float = WAIT_SECONDS) -> None:
        self.wait = wait
        self.database = database
        self.path = database + ".write.lock"
        self.queue_path = database + ".write.queue"
        self._fds: tuple[int, int] | None = None
        self._pid = 0
        # Each turn's wait and hold (`Store.observe_writes`: gateway_store_write_seconds).
        self.observe: Observer | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the gate for the block; `StoreUnavailable` after `wait` seconds without it.

        The writers of this process take turns first, in the order they asked, waiting
        without polling (the event writer and the journal of one process would otherwise
        poll against each other, each try needing the GIL); then the one whose turn it is
        takes the files' locks, against other processes."""
        asked = time.monotonic()
        turns, gate = self._take(asked + self.wait)
        taken = time.monotonic()
        try:
            yield
        finally:
            _let_go(turns, gate)
            self.told(taken - asked, time.monotonic() - taken)

    def turn(self, deadline: float) -> None:
        """Wait until the writers ahead of this one are done, and let the gate go at once:
        for a write that is one call into SQLite (see the module's docstring). A writer that
        asks after this one waits for SQLite's lock instead, in short pauses."""
        _let_go(*self._take(deadline))

    def told(self, waited: float, held: float) -> None:
        """Tell the observer of a turn (a metric never fails a write)."""
        if self.observe is not None:
            with contextlib.suppress(Exception):
                self.observe(waited, held)

    def _take(self, deadline: float) -> tuple[_Turns, int]:
        turns = _turns_of(self.path)
        if not turns.take(max(0.0, deadline - time.monotonic())):
            raise _unavailable(self.path, self.wait)
        try:
            queue, gate = self._open()
            _take(queue, deadline, self)
            try:
                _take(gate, deadline, self)
            finally:
                fcntl.flock(queue, fcntl.LOCK_UN)
        except BaseException:
            turns.give()
            raise
        return turns, gate

    def close(self) -> None:
        if self._fds is not None and self._pid == os.getpid():
            for fd in self._fds:
                os.close(fd)
        self._fds = None

    def _open(self) -> tuple[int, int]:
        if self._fds is None or self._pid != os.getpid():
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
            self._fds = (os.open(self.queue_path, flags, 0o644), os.open(self.path, flags, 0o644))
            self._pid = os.getpid()
        return self._fds


class _Turns:
    """The writers of one database in this process, served in the order they asked (a
    ticket lock); one that gave up is skipped when its turn comes."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._next = self._serving = 0
        self._abandoned: set[int] = set()

    def take(self, timeout: float) -> bool:
        with self._changed:
            ticket = self._next
            self._next += 1
            if self._changed.wait_for(lambda: self._serving == ticket, timeout):
                return True
            self._abandoned.add(ticket)
            return False

    def give(self) -> None:
        with self._changed:
            self._serving += 1
            while self._serving in self._abandoned:
                self._abandoned.remove(self._serving)
                self._serving += 1
            self._changed.notify_all()


_TURNS: dict[str, _Turns] = {}
_TURNS_GUARD = threading.Lock()


def _forgotten_in_child() -> None:
    # A child forked while a writer of the parent held its turn would wait for it forever.
    global _TURNS_GUARD
    _TURNS_GUARD = threading.Lock()
    _TURNS.clear()


os.register_at_fork(after_in_child=_forgotten_in_child)


def _turns_of(path: str) -> _Turns:
    with _TURNS_GUARD:
        return _TURNS.setdefault(path, _Turns())


def _let_go(turns: _Turns, gate: int) -> None:
    try:
        fcntl.flock(gate, fcntl.LOCK_UN)
    finally:
        turns.give()


def _take(fd: int, deadline: float, gate: WriteGate) -> None:
    pause = FIRST_PAUSE_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise _unavailable(gate.path, gate.wait) from None
            time.sleep(pause)
            pause = min(pause * 2, LAST_PAUSE_SECONDS)


def _unavailable(path: str, wait: float) -> StoreUnavailable:
    return StoreUnavailable(
        f"another writer has held {path} for {wait:g} s: the store is locked "
        "(a gateway process stopped mid-commit?)"
    )


# The busy_timeout of a gated writer's connection, in ms: a gated writer waits in `pauses`
# instead of SQLite's busy handler (whose first sleep is a millisecond).
NO_BUSY_WAIT = 0


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLite answered SQLITE_BUSY (or one of its extended codes): another writer has the lock."""
    return exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def until_not_busy(call: Callable[[], T], gate: WriteGate, deadline: float) -> T:
    """`call()`, a call into SQLite, tried again after short pauses while SQLite answers
    busy; `StoreUnavailable` at `deadline`."""
    pause = FIRST_PAUSE_SECONDS
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            if time.monotonic() >= deadline:
                raise sqlite_locked(gate) from exc
        time.sleep(pause)
        pause = min(pause * 2, LAST_PAUSE_SECONDS)


def begin_immediate(db: sqlite3.Connection, gate: WriteGate) -> None:
    """BEGIN IMMEDIATE on a connection that does not wait in SQLite's busy handler: whose
    turn it is may find SQLite's lock held for the length of another writer's one call."""
    until_not_busy(lambda: db.execute("BEGIN IMMEDIATE"), gate, time.monotonic() + gate.wait)


def sqlite_locked(gate: WriteGate) -> StoreUnavailable:
    return StoreUnavailable(
        f"SQLite's write lock on {gate.database} stayed taken for {gate.wait:g} s "
        "(a writer that takes no turn at the write gate, stopped mid-transaction?)"
    )
