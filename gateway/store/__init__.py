"""The durable store: events, runs, steps, threads, schedules, sessions and knowledge, in
SQLite or PostgreSQL.

`Store` is the one object the rest of the gateway talks to: one part per concept, each with
the interface in `gateway.store.abc` (`store.events.get(id)`, `store.runs.claim(...)`).
"""

from __future__ import annotations

# isort: off
# First: every store module below imports sqlalchemy.ext.asyncio, which this loads lean.
from gateway.store import without_orm  # noqa: F401
# isort: on

import functools
from collections.abc import Callable

from sqlalchemy import text

from gateway.errors import SchemaMismatch
from gateway.store import database
from gateway.store.abc import (
    EvalStore,
    EventStore,
    FetchStore,
    KnowledgeStore,
    ReconcileStore,
    ReplicaPresence,
    RetentionStore,
    RunStore,
    ScheduleStore,
    SessionStore,
    SpendingStore,
    StatsStore,
    StepStore,
    ThreadStore,
    WakeUps,
)
from gateway.store.batching import Journal
from gateway.store.evals import Evals
from gateway.store.events import Events
from gateway.store.fetch import Fetch
from gateway.store.fetches import Fetches
from gateway.store.ingest import EventWriter
from gateway.store.knowledge import Knowledge
from gateway.store.lock import WorkerLock
from gateway.store.notify import Notifier
from gateway.store.notify_socket import SocketNotifier
from gateway.store.presence import Presence
from gateway.store.reconciliations import Reconciliations
from gateway.store.records import (
    Event,
    NewEvent,
    NewRun,
    Reconciliation,
    Run,
    ScheduleState,
    Step,
    Stored,
)
from gateway.store.retention import Retention
from gateway.store.runs import Runs
from gateway.store.schedules import Schedules
from gateway.store.sessions import Sessions
from gateway.store.spending import Spending
from gateway.store.stats import Stats
from gateway.store.status import (
    EventStatus,
    ReceivedVia,
    ReconcileStatus,
    RunStatus,
    StepStatus,
)
from gateway.store.steps import Steps
from gateway.store.threads import Threads

__all__ = [
    "Event",
    "EventStatus",
    "Fetch",
    "NewEvent",
    "NewRun",
    "ReceivedVia",
    "ReconcileStatus",
    "Reconciliation",
    "Run",
    "RunStatus",
    "ScheduleState",
    "Step",
    "StepStatus",
    "Store",
    "Stored",
]


class Store:
    """The store at `url`, made of its parts; `open()` it before use, `close()` it after.

    Reads go to `engine`'s pool. Changes to work go through one `journal` and new events
    through the `writer`, each a group commit (on SQLite, each on a thread and connection of
    its own); `write_engine` migrates.
    """

    events: EventStore
    runs: RunStore
    steps: StepStore
    threads: ThreadStore
    schedules: ScheduleStore
    sessions: SessionStore
    knowledge: KnowledgeStore
    retention: RetentionStore
    stats: StatsStore
    spending: SpendingStore
    fetches: FetchStore
    reconciliations: ReconcileStore
    evals: EvalStore  # used in the eval store only (gateway eval)

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine, self.dialect = database.connect(url)
        self.write_engine = database.write_engine(self.engine, self.dialect)
        self.journal = Journal(self.write_engine, self.dialect)
        self.writer = EventWriter(self.engine, self.dialect)
        on = (self.engine, self.journal, self.dialect)
        self.events = Events(*on, self.writer)
        self.runs = Runs(*on)
        self.steps = Steps(*on)
        self.threads = Threads(*on)
        self.schedules = Schedules(*on)
        self.sessions = Sessions(*on)
        self.knowledge = Knowledge(*on)
        self.retention = Retention(*on)
        self.stats = Stats(*on)
        self.spending = Spending(*on)
        self.fetches = Fetches(*on)
        self.reconciliations = Reconciliations(*on)
        self.evals = Evals(*on)

    async def open(self, *, migrate: bool = True) -> None:
        """Bring the schema to the head revision (if `migrate`) and start the writers.

        Refuses a schema it does not know, and one that is behind when not migrating.
        """
        if migrate:
            await database.upgrade(self.write_engine)
        else:
            revision = await database.check_known(self.engine)
            head = database.head_revision()
            if revision != head:
                raise SchemaMismatch(revision, head)
        self.writer.start()
        self.journal.start()

    def observe_writes(self, observe: Callable[[str, float, float], None]) -> None:
        """Tell `observe(writer, waited, held)` of each turn of SQLite's one write lock, by
        the event writer ("events") and the journal ("journal"), in seconds; on their
        threads. Nothing on PostgreSQL, where writers do not take turns."""
        self.writer.observe_writes(functools.partial(observe, "events"))
        self.journal.observe_writes(functools.partial(observe, "journal"))

    async def close(self) -> None:
        await self.journal.stop()
        await self.writer.stop()
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def presence(self, owner: str) -> ReplicaPresence | None:
        """The presence lock a worker `owner` holds on this store, so that its runs are taken
        over the moment it is gone (PostgreSQL); None on SQLite, which has one worker."""
        if self.dialect.single_writer:
            return None
        return Presence(self.url, owner, self.runs.release_orphans)

    def wake_ups(self) -> WakeUps:
        """How processes on this store wake each other's workers: NOTIFY on PostgreSQL, a
        datagram socket beside the database file on SQLite."""
        if self.dialect.skip_locked:
            return Notifier(self.url)
        return SocketNotifier(str(self.engine.url.database))

    def worker_lock(self) -> WorkerLock | None:
        """The lock a worker must hold on this store: SQLite allows one worker process per
        database file; PostgreSQL needs none (workers claim with SKIP LOCKED)."""
        if not self.dialect.single_writer:
            return None
        return WorkerLock(str(self.engine.url.database))
