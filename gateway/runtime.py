"""The running gateway: one object owning the store, worker, scheduler and notifier.

`Gateway` is the composition root; `gateway.app` only builds routes over it, and the admin
API, the dashboard and the CLI reach the gateway's parts through it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import structlog

from gateway import tracing
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.ingest.endpoint import IngestEndpoint
from gateway.metrics import Metrics
from gateway.retention.disk import Probe, free_bytes
from gateway.retention.service import RetentionService
from gateway.rules.loader import RuleSet
from gateway.ruleset import load_ruleset
from gateway.runs.executor import ExecutorFactory
from gateway.runs.shutdown import Shutdown
from gateway.scheduler import Scheduler
from gateway.store import Store
from gateway.store.abc import ReplicaPresence, WakeUps
from gateway.store.lock import WorkerLock
from gateway.worker import Worker

if TYPE_CHECKING:
    from gateway.knowledge.service import Indexing
    from gateway.scheduler.reconciling import Reconciling

log = structlog.get_logger(__name__)
# What a process may do; `gateway serve --role` picks some, all by default.
ROLES = frozenset({"ingest", "worker", "scheduler"})


class Companion(Protocol):
    """A process that lives and dies with this gateway's (`gateway.worker_process`): started
    once the store is open, told of each rule reload, stopped first."""

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...

    def reload(self) -> None: ...

    def unready(self) -> str | None:
        """Why /readyz must fail because of it, or None."""
        ...


class Gateway:
    """The gateway for `config`: raises `ConfigError` (every problem) on a bad rule file.

    `start(roles)` builds and starts the parts those roles need (a worker, a scheduler) and
    opens the store; `stop()` stops them in the reverse order; `reload_rules()` swaps the
    rules of every part together. Ingest (`self.ingest`) serves in every role.
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        disk_probe: Probe = free_bytes,
    ) -> None:
        self.config = config
        self.rules = load_ruleset(config)
        if config.tracing:
            tracing.configure(config.tracing)
        self.store = Store(config.store_url)
        self.metrics = Metrics()
        self.store.observe_writes(self.metrics.store_write)
        # The pruning job (scheduler role) and the free-disk floor ingest and /readyz obey.
        self.retention = RetentionService(config, self.store, self.metrics, probe=disk_probe)
        self.ingest = IngestEndpoint(
            config, self.store, self.metrics, clock, disk=self.retention.disk
        )
        self.roles: frozenset[str] | None = None
        self.worker: Worker | None = None
        self.scheduler: Scheduler | None = None
        # Reconciliation of the sources that have `reconcile:` (scheduler role).
        self.reconciling: Reconciling | None = None
        self.notifier: WakeUps | None = None
        # Keeps the knowledge collections indexed (with the worker, where there are any).
        self.indexing: Indexing | None = None
        self._lock: WorkerLock | None = None
        # SIGTERM: stop taking work, let calls in flight finish (`shutdown_grace`).
        self.shutdown = Shutdown(config.shutdown_grace)
        # PostgreSQL: a replica's presence, so that its runs are taken over once it is gone.
        self.presence: ReplicaPresence | None = None
        self._reloads: set[asyncio.Task[None]] = set()
        # `gateway serve --processes N`: the worker processes beside this door.
        self.companions: list[Companion] = []
        # In one of those worker processes (gateway.worker_process): the door took the SQLite
        # worker lock for them all before forking, and only the first resumes the runs left
        # running (another would take over its siblings' runs).
        self.lock_inherited = False
        self.resumes_runs = True

    def _build(self, roles: frozenset[str]) -> None:
        """The parts `roles` need, built once: a later start reuses them (same roles only)."""
        if self.roles is not None:
            if roles != self.roles:
                raise ValueError(f"started before with roles {sorted(self.roles)}")
            return
        unknown = roles - ROLES
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}; use {sorted(ROLES)}")
        self.roles = roles
        store, config = self.store, self.config
        # Workers in other processes wake on NOTIFY (PostgreSQL) or a datagram (SQLite).
        self.notifier = store.wake_ups()
        if "worker" in roles:
            notify = self.notifier.notify_soon
            # The executors of rule kinds beyond direct actions (the worker closes them).
            executors: dict[str, ExecutorFactory] = {}
            if config.models or any(r.assistant for r in self.rules.rules):
                # Imported only here: the model client is tens of MB resident (benchmarks.md).
                from gateway.assistant.runner import AssistantRunner

                executors["assistant"] = AssistantRunner.factory(config)
            self.worker = Worker(
                store,
                self.rules,
                config,
                executors=executors,
                metrics=self.metrics,
                notify=notify,
            )
            # New events wake the worker the moment they are committed; those no rule takes
            # are stored unmatched by that very commit, and wake nobody.
            store.events.on_commit(self.worker.notify_events)
            store.events.settle_unmatched(self.worker.unmatched)
            self._outlast(self.worker)
            self._lock = None if self.lock_inherited else store.worker_lock()
            if config.knowledge:
                # Imported here: a gateway without collections keeps none of it (its loaders,
                # splitter, embeddings and models' settings).
                from gateway.knowledge.service import Indexing

                self.indexing = Indexing(config.knowledge, config.models, config.base_dir)
        if "scheduler" in roles:
            # Also with no scheduled rule yet: a rule reload may bring one.
            self.scheduler = Scheduler(store, self.rules.scheduled)
            if any(source.reconcile is not None for source in config.sources.values()):
                # Imported here: a gateway reconciling no source keeps none of it.
                from gateway.scheduler.reconciling import Reconciling

                self.reconciling = Reconciling(store, config, self.metrics)
        store.events.on_commit(self.notifier.notify_soon)

    async def start(self, roles: frozenset[str] = ROLES, *, migrate: bool = True) -> None:
        """Open the store (migrating it unless `migrate` is false) and start the parts."""
        self._build(roles)
        if self._lock is not None:
            self._lock.acquire()
        try:
            await self.store.open(migrate=migrate)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise
        try:
            if self.presence is not None:
                await self.presence.start()  # before claiming: its claims need its lock
            if self.worker is not None:
                await self.worker.start(resume=self.resumes_runs)
                if self.indexing is not None:
                    self.indexing.start(self.store.knowledge)
                if self.notifier is not None:
                    self.notifier.start(self.wake)
            if self.scheduler is not None:
                await self.scheduler.start()
            if self.reconciling is not None:
                await self.reconciling.start()
            self.retention.start(prune="scheduler" in roles)
            for companion in self.companions:
                await companion.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop what `start` started, the store last; a started part is always stopped."""
        try:
            for companion in self.companions:
                await companion.stop(self.shutdown.left())
            await self.retention.stop()
            if self.reconciling is not None:
                await self.reconciling.stop()
            if self.scheduler is not None:
                await self.scheduler.stop()
            if self.notifier is not None:
                await self.notifier.stop()
            if self.indexing is not None:
                await self.indexing.stop()
            if self.worker is not None:
                await self.worker.stop(self.shutdown.left())
            if self.presence is not None:
                await self.presence.stop()
        finally:
            await self.store.close()
            if self._lock is not None:
                self._lock.release()

    def _outlast(self, worker: Worker) -> None:
        """SIGTERM stops the worker's claims; on PostgreSQL its presence lock names it."""
        self.shutdown.on_begin.append(worker.stop_claiming)
        self.presence = self.store.presence(worker.owner)
        if self.presence is not None:
            worker.owner = self.presence.owner
            self.presence.on_takeover = lambda count: worker.announce_runs()

    def wake(self) -> None:
        """Another replica stored events or queued runs (a NOTIFY): look for them now."""
        if self.worker is not None:
            self.worker.notify_events()
            self.worker.notify_runs()

    async def reload_rules(self) -> RuleSet:
        """Re-read the rules through `load_ruleset`, the very check `gateway check` and start-up
        run; only a rule set without any problem replaces the old one.

        The gateway's rules, its worker's and its scheduler's are swapped together. Raises
        `ConfigError` with every problem, leaving all three as they were.
        """
        try:
            rules = load_ruleset(self.config)
        except ConfigError as exc:
            log.warning("rules.reload_refused", problems=exc.problems)
            raise
        self.rules = rules
        if self.worker is not None:
            self.worker.replace_rules(rules)
        if self.scheduler is not None:
            await self.scheduler.replace_rules(rules.scheduled)
        for companion in self.companions:
            companion.reload()
        log.info("rules.reloaded", rules=len(rules.rules))
        return rules

    async def _reload_on_signal(self) -> None:
        """SIGHUP's reload: nobody waits for an answer, so the log says what happened."""
        try:
            await self.reload_rules()
        except ConfigError:
            pass  # refused and logged, the old rules kept
        except Exception as exc:  # a signal handler has no caller to raise to
            log.error("rules.reload_failed", error=str(exc))

    def reload_on_hangup(self) -> Callable[[], None]:
        """Make SIGHUP reload the rules (the loop's thread must be the main one); returns the
        function that undoes it. Windows has no SIGHUP: there it does nothing."""
        hangup = getattr(signal, "SIGHUP", None)
        if hangup is None:
            return lambda: None
        loop = asyncio.get_running_loop()

        def reload() -> None:
            task = loop.create_task(self._reload_on_signal())
            self._reloads.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(self._reloads.discard)

        loop.add_signal_handler(hangup, reload)

        def unhook() -> None:
            loop.remove_signal_handler(hangup)

        return unhook

    async def update_queue_metrics(self) -> None:
        """Set the queue depth and age gauges from the store (for /metrics)."""
        now = datetime.now(UTC)
        for queue, (count, oldest) in (await self.store.runs.queue_stats()).items():
            self.metrics.queue_depth.labels(queue).set(count)
            age = (now - oldest).total_seconds() if oldest else 0.0
            self.metrics.queue_age.labels(queue).set(max(0.0, age))
