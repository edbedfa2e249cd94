"""The store as the rest of the gateway sees it: one interface per part, no SQL.

`Store` (gateway.store) has one attribute per part: `store.events`, `store.runs`, `store.steps`,
`store.threads`, `store.schedules`, `store.sessions`, and the parts that each serve one
feature, whose interfaces are in `gateway.store.abc_features` (re-exported here):
`store.knowledge`, `store.retention`, `store.stats`, `store.fetches`. Writes to work (runs,
steps, threads) are group-committed: each call returns once its own change is committed, and a
burst of calls from many runs shares one transaction.
`store.knowledge`, `store.retention`, `store.stats`, `store.reconciliations`. Writes to work
(runs, steps, threads) are group-committed: each call returns once its own change is
committed, and a burst of calls from many runs shares one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from gateway.store.abc_features import EvalStore as EvalStore
from gateway.store.abc_features import FetchStore as FetchStore
from gateway.store.abc_features import KnowledgeStore as KnowledgeStore
from gateway.store.abc_features import ReconcileStore as ReconcileStore
from gateway.store.abc_features import RetentionStore as RetentionStore
from gateway.store.abc_features import StatsStore as StatsStore
from gateway.store.records import (
    Event,
    NewEvent,
    NewRun,
    Run,
    ScheduleState,
    Spent,
    Step,
    Stored,
)
from gateway.store.status import RunStatus

Route = tuple[int, Sequence[NewRun], str]
"""An event's routing: its id, the runs it starts, its new status (an `EventStatus`)."""
Claim = tuple[str, int, float]
"""A claim: the worker taking runs, how many at most, its lease in seconds."""
Usage = tuple[int, int, float]
"""What a model turn cost: input tokens, output tokens, money."""
ThreadItems = tuple[str, list[Any]]
"""A conversation to remember: its thread key and the items to append."""


class ReplicaPresence(Protocol):
    """A worker's presence on a shared store (`gateway.store.presence`): held from `start`
    to `stop`; its runs are taken over the moment it is gone (`on_takeover` hears of others')."""

    owner: str
    on_takeover: Callable[[int], None]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class WakeUps(Protocol):
    """Wake-ups between processes on one store, after new work is committed: NOTIFY on
    PostgreSQL (`gateway.store.notify`), a Unix datagram per listener on SQLite
    (`gateway.store.notify_socket`). Best effort: a lost one waits for the fallback poll."""

    def start(self, callback: Callable[[], None]) -> None:
        """Listen in the background: `callback` on each wake-up from another process, and
        whenever some may have been missed (at start, after a reconnection)."""
        ...

    async def stop(self) -> None: ...

    async def notify(self) -> None:
        """Tell every other listening process that there is new work, now."""
        ...

    def notify_soon(self, *_: object) -> None:
        """Tell every other listening process that there is new work; never raises."""
        ...


class EventStore(Protocol):
    """Webhook deliveries (and schedule firings), stored once per dedup key."""

    async def add(self, new: NewEvent) -> Stored:
        """Store one event; returns once it is committed, or found already stored.

        Raises `EventDoesNotFit` at once for a value the table cannot hold, and
        `StoreUnavailable` if the database fails.
        """
        ...

    def on_commit(self, callback: Callable[[Sequence[Stored]], None]) -> None:
        """Call `callback` with the newly stored events that await routing after each commit
        (wakes the worker)."""
        ...

    def settle_unmatched(self, unmatched: Callable[[NewEvent], bool]) -> None:
        """Store a new event for which `unmatched` holds as already unmatched, in the commit
        that stores it: routing it would start nothing (the worker's rules decide)."""
        ...

    async def get(self, event_id: int) -> Event | None: ...

    async def find(
        self,
        *,
        source: str | None = None,
        status: str | None = None,
        limit: int = 50,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: int | None = None,
    ) -> list[Event]:
        """Newest first; `since`/`until` bound `received_at`, `before` pages by id."""
        ...

    async def pending(self, limit: int = 500) -> list[Event]:
        """Events not routed yet, oldest first."""
        ...

    async def by_ids(self, ids: Iterable[int]) -> list[Event]: ...

    async def set_status(self, event_id: int, status: str) -> None: ...

    async def count(self) -> int: ...


class RunStore(Protocol):
    """Runs: one per matched rule per event, routed, claimed under a lease, finished."""

    async def route(self, event_id: int, new_runs: Sequence[NewRun], status: str) -> list[int]:
        """Create the runs an event matched and set its status, atomically; the new run ids,
        or [] if someone else routed the event first."""
        ...

    async def route_and_claim(
        self, routes: Sequence[Route], claim: Claim | None
    ) -> tuple[list[list[int] | None], list[Run]]:
        """`route` for a page of events in one commit, then, in the same commit, `claim`: a
        worker with free slots takes the runs it just created without another round trip.
        Each event's new run ids (None for one routed by someone else), and the claimed runs."""
        ...

    async def add(self, new_runs: Sequence[NewRun]) -> list[int]:
        """New runs for an event that is already routed (replay); their ids, in order."""
        ...

    async def claim(self, owner: str, limit: int, lease: float) -> list[Run]:
        """Take up to `limit` runs that are due, whose ordering key is free, under a lease.

        A run is claimable when it is pending and due, or running under an expired lease (its
        worker died). A run waits while an earlier run with its ordering key is unfinished.
        """
        ...

    async def renew(self, owner: str, run_ids: Sequence[int], lease: float) -> None: ...

    async def expire_leases(self) -> int:
        """Make every running run claimable now (SQLite at start: no other worker can exist)."""
        ...

    async def release_orphans(self) -> int:
        """End the leases of runs whose owner's presence lock is gone (PostgreSQL; see
        `gateway.store.presence`), so they can be claimed now; how many."""
        ...

    async def next_due(self) -> datetime | None:
        """When the earliest waiting retry becomes due (for the worker's timer)."""
        ...

    async def finish(self, run_id: int, status: RunStatus, error: str | None = None) -> None: ...

    async def retry_later(self, run_id: int, at: datetime, error: str) -> None:
        """Back to pending, due at `at`, its lease dropped."""
        ...

    async def wait(self, run_id: int, until: datetime, reason: str) -> None:
        """Park a run as waiting (a downstream's circuit is open) until `until`, for `reason`,
        without spending the attempt its claim counted."""
        ...

    async def wake(self, reason: str) -> int:
        """Make every run waiting for `reason` due now (a probe found the downstream back);
        how many."""
        ...

    async def pause(self, run_id: int, status: RunStatus) -> None:
        """Leave a run waiting for someone (awaiting_approval): no lease, no retry timer."""
        ...

    async def requeue(self, run_id: int, *, reset_attempts: bool) -> bool:
        """Put a run back to pending now (operator retry, or an approval decision); False if
        it is running."""
        ...

    async def get(self, run_id: int) -> Run | None: ...

    async def find(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        event_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        oldest_first: bool = False,
    ) -> list[Run]:
        """Newest first (or oldest first); `since`/`until` bound `created_at`."""
        ...

    async def queue_stats(self) -> dict[str, tuple[int, datetime | None]]:
        """For each queue (events, runs, approvals): how many wait, and since when."""
        ...

    async def count(self, status: str | None = None) -> int: ...


class StepStore(Protocol):
    """The journal of a run: every tool call and model turn, recorded before it happens."""

    async def start(self, run_id: int, position: int, **values: Any) -> None:
        """Record a step as started (its outcome unknown) before the call it stands for."""
        ...

    async def update(self, run_id: int, position: int, **values: Any) -> None: ...

    async def finish(
        self,
        run_id: int,
        position: int,
        step_values: dict[str, Any],
        run_status: RunStatus | None = None,
        run_error: str | None = None,
        *,
        new: bool = False,
        usage: Usage | None = None,
        thread: ThreadItems | None = None,
    ) -> None:
        """End a step, and with `run_status` its run, in one commit.

        `new`: the step was not recorded as started (a call without side effects, a skip, a
        model turn): it is inserted whole. `usage` is added to the run's totals; `thread`
        appends the run's conversation to memory.
        """
        ...

    async def record(
        self,
        run_id: int,
        new_steps: list[tuple[int, dict[str, Any]]],
        run_status: RunStatus | None = None,
        run_error: str | None = None,
        *,
        usage: Usage | None = None,
        thread: ThreadItems | None = None,
    ) -> None:
        """Insert finished steps (position, values), add usage, and optionally end the run and
        append its conversation to the thread: all in one commit."""
        ...

    async def of_run(self, run_id: int) -> list[Step]:
        """A run's steps in order: its journal."""
        ...

    async def unclosed(
        self, opened: str, closed: str, *, since: datetime, ended_before: datetime, limit: int
    ) -> list[Step]:
        """Succeeded `opened` steps (started since `since`) of runs that ended before
        `ended_before`, with no later `closed` step in their run: a container not deleted."""
        ...

    async def get(self, step_id: int) -> Step | None: ...

    async def awaiting(self, limit: int = 200) -> list[Step]:
        """Steps awaiting approval, oldest first: the approvals inbox."""
        ...

    async def decide(
        self,
        step_id: int,
        decision: str,
        by: str,
        reason: str | None,
        approved_digest: str | None = None,
    ) -> Step | None:
        """Approve or reject a step awaiting approval; returns it, or None if not awaiting.

        `approved_digest`: the digest of the arguments an approval is given for (the run makes
        the call only if its arguments have it).
        """
        ...


class ThreadStore(Protocol):
    """Conversation memory of assistants, by thread key (appended by `StepStore`)."""

    async def items(self, key: str, *, before_run: int | None = None) -> list[Any]:
        """The conversation items stored under a thread key, oldest first."""
        ...


class ScheduleStore(Protocol):
    """What the scheduler knows of each scheduled rule, shared by every process.

    `last_fire_at` only moves forward, so a late or duplicate writer cannot make a period due
    again.
    """

    async def load(self, rules: list[str] | None = None) -> dict[str, ScheduleState]: ...

    async def last_fire(self, rule: str) -> datetime | None: ...

    async def record_next(self, rule: str, next_fire_at: datetime | None, now: datetime) -> None:
        """Note the next fire time (at start-up), creating the row if the rule is new."""
        ...

    async def record_fire(
        self,
        rule: str,
        *,
        fired_at: datetime,
        event_id: int,
        result: str,
        next_fire_at: datetime | None,
        now: datetime,
    ) -> None:
        """Note a scheduled firing, unless the row already holds a later one."""
        ...

    async def record_manual(self, rule: str, *, event_id: int, now: datetime) -> None:
        """Note a manual firing: it is the last event, but no scheduled period was fired."""
        ...


class SessionStore(Protocol):
    """Dashboard sessions ended by logout, refused by every replica until they expire."""

    async def revoke(
        self, nonce: str, expires_at: datetime, *, now: datetime | None = None
    ) -> None:
        """Refuse a dashboard session from now on, everywhere; forget expired revocations."""
        ...

    async def revoked(self, nonce: str) -> bool: ...


class SpendingStore(Protocol):
    """What model turns cost, summed from the journal: the same total on every replica."""

    async def spent(self, since: datetime, until: datetime, rule: str | None = None) -> Spent:
        """Cost and tokens of the model turns started in [since, until), of `rule`'s runs
        only if given."""
        ...
