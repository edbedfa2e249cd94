"""The worker: routes stored events into runs by the rules, claims runs and keeps their leases.

What a run does is its executor's business (gateway/runs): the worker hands each claimed run
to the executor of its rule's kind, and knows no more of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import socket
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import replace

import structlog

from gateway.config import Config
from gateway.knowledge.settings import handlers_with_knowledge
from gateway.mcp.catalogue import Catalogue
from gateway.metrics import Metrics
from gateway.retrying import RetryOverride
from gateway.rules.loader import RuleSet
from gateway.rules.plan import NoRuleFits, plan, routed_status
from gateway.runs.actions import ActionsExecutor
from gateway.runs.circuit import Circuits
from gateway.runs.claimable import Claimable
from gateway.runs.dispatch import Dispatch
from gateway.runs.executor import Executor, ExecutorFactory, RunServices
from gateway.runs.in_hand import EventsInHand
from gateway.runs.retry import RetryPolicy
from gateway.runs.shutdown import drain
from gateway.store import Event, NewEvent, NewRun, Run, Store, Stored
from gateway.store.notify import wait_until_set
from gateway.store.status import FINISHED, EventStatus, RunStatus
from gateway.thin.fetching import Fetching
from gateway.tools import TOOLS, Tool, Toolbox

log = structlog.get_logger(__name__)

# Only a fallback for work written by another process (CLI, another replica): in-process
# events and finished runs wake the worker at once.
FALLBACK_POLL_SECONDS = 1.0
# Events handed over by the writer and not yet routed, at most (the pending scan finds more).
ARRIVED_MAX = 4096
# Pending events routed per commit by the scan; a shorter page means none were left.
SCAN_PAGE = 500
# Under a backlog, how long the worker waits for more free slots to claim them together.
CLAIM_LINGER_SECONDS = 0.005


class Worker:
    """Routes and runs, in the gateway process (or in a worker-only replica)."""

    def __init__(
        self,
        store: Store,
        rules: RuleSet,
        config: Config,
        *,
        executors: Mapping[str, ExecutorFactory] | None = None,
        tools: Mapping[str, Tool] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        metrics: Metrics | None = None,
        notify: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        # Whether a claim could find anything: claims and `next_due` reads only after a change.
        self._claimable = Claimable(FALLBACK_POLL_SECONDS)
        # Tells the other replicas that there are new runs (NOTIFY on PostgreSQL).
        self._notify_others = notify or (lambda: None)
        self.lease_seconds = config.worker.lease_seconds
        self.metrics = metrics or Metrics()
        self.rules = rules
        self.config = config
        # Built-in tools and those of the MCP servers under `mcp:` (`gateway eval` gives its own).
        given = tools if tools is not None else TOOLS
        self.tools = given if isinstance(given, Catalogue) else Catalogue(given, config.mcp)
        # The families' settings and the clients their calls share, closed by `stop`.
        self.toolbox = Toolbox(handlers_with_knowledge(config), self.tools)
        # Shutting down: runs in flight finish their calls, start no new one (`hand_over`).
        self.draining = False
        services = RunServices.assemble(
            store,
            self.toolbox,
            self.tools,
            self.metrics,
            RetryPolicy(config, rule_retry=self._rule_retry),
            wake=functools.partial(self.notify_runs, retry=True),
            finishing=self._finishing_run,
            circuits=Circuits(config.retry.circuit, store.runs, on_change=self._circuit_changed),
            draining=lambda: self.draining,
        )
        self.outcomes = services.outcomes
        # One executor per rule kind: the worker hands each claimed run to its kind's.
        factories = {"actions": ActionsExecutor, **(executors or {})}
        self.executors: dict[str, Executor] = {k: make(services) for k, make in factories.items()}
        self.dispatch = Dispatch(store, self.outcomes, self.executors, self.tools.prepare)
        self.concurrency = config.worker.concurrency
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._sleep = sleep
        self._events_ready, self._runs_ready = asyncio.Event(), asyncio.Event()
        self._active: dict[int, asyncio.Task[None]] = {}
        # Slots promised to a claim in flight (routing too; claims never exceed the slots), and
        # runs whose last step is done and whose final commit is on its way (`_finishing_run`).
        self._reserved = self._finishing = 0
        # The last claim filled every free slot: more runs are waiting.
        self._backlog = False
        # Events this process just stored, handed over by the writer: routed without being
        # read back. The pending scan finds whatever does not fit, and other processes' events.
        self._arrived: deque[Event] = deque()
        self._scan, self._routing = True, False
        # Events of runs routed or claimed here, until those runs start: they need no read.
        self.in_hand = EventsInHand()
        self._tasks: list[asyncio.Task[None]] = []
        # The runs' files in memory, and callbacks told about each run that ends.
        self.files, self.on_run_end = self.outcomes.files, self.outcomes.on_run_end
        self.fetching = Fetching(store, config, self.metrics, wake_routing=self.notify_events)
        self._no_rule = NoRuleFits()
        # Runs of this worker that finished (no retry, no wait): nothing new to claim after them.
        self._finished: set[int] = set()
        self.on_run_end.append(self._run_ended)

    def _rule_retry(self, name: str) -> RetryOverride | None:
        return getattr(self.rules.by_name.get(name), "retry", None)

    def replace_rules(self, rules: RuleSet) -> None:
        """Route by `rules` from now on (a reload); runs already planned keep their rule's name."""
        self.rules = rules

    def unmatched(self, new: NewEvent) -> bool:
        """Whether routing `new` would start nothing whatever its payload (no rule's `on` fits,
        nothing to fetch): the writer stores it unmatched (`EventStore.settle_unmatched`)."""
        return new.source not in self.fetching.fetchers and self._no_rule(self.rules, new)

    @contextlib.contextmanager
    def _finishing_run(self) -> Iterator[None]:
        """Held while a run's last step commits: its work is done, so its slot counts as free
        and, under a backlog, a claim can join the same commit instead of the next one."""
        self._finishing += 1
        if self._backlog:
            self._runs_ready.set()
        try:
            yield
        finally:
            self._finishing -= 1

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, resume: bool = True) -> None:
        if self.store.dialect.single_writer and resume:
            # One worker per SQLite file (or the first to start): the running runs' owner died.
            resumed = await self.store.runs.expire_leases()
            if resumed:
                log.info("worker.resume", runs=resumed)
        self._tasks = [
            asyncio.create_task(self._route_loop(), name="worker-route"),
            asyncio.create_task(self._run_loop(), name="worker-runs"),
            asyncio.create_task(self._renew_loop(), name="worker-leases"),
        ]
        for executor in self.executors.values():
            executor.start()  # its own background work (an assistant's container sweep)
        self.fetching.start()
        self.notify_events()

    def stop_claiming(self) -> None:
        """SIGTERM: route and claim nothing more; runs in flight go on (see `stop`)."""
        self.draining = True
        for task in self._tasks[:2]:  # the route and claim loops; leases are still renewed
            task.cancel()

    async def stop(self, grace: float = 0.0) -> None:
        """Stop, letting runs in flight finish for up to `grace` seconds first."""
        self.stop_claiming()
        await asyncio.gather(*self._tasks[:2], return_exceptions=True)
        await drain(self._active, grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        active = list(self._active.values())
        for task in active:
            task.cancel()
        # A cancelled run keeps its journal; its lease expires and it resumes after restart.
        await asyncio.gather(*active, return_exceptions=True)
        self._tasks = []
        for executor in self.executors.values():
            await executor.aclose()
        await self.fetching.aclose()
        await self.toolbox.aclose()

    def notify_events(self, stored: Sequence[Stored] = ()) -> None:
        """New events: `stored` (this process's, just committed), or somewhere in the store."""
        # Not while a scan is due: events that did not fit are waiting for it, and later
        # events routed from the hand would overtake them.
        if stored and not self._scan and len(self._arrived) + len(stored) <= ARRIVED_MAX:
            self._arrived.extend(Event.just_stored(s) for s in stored)
        else:
            self._scan = True
        self._events_ready.set()

    def notify_runs(self, *, retry: bool = False) -> None:
        """Runs may be claimable (new, requeued, a `retry` scheduled here, another process's).
        On SQLite `next_due` is kept: another worker process claims the retries it scheduled."""
        self._claimable.changed(due=retry or not self.store.dialect.single_writer)
        self._runs_ready.set()

    def announce_runs(self) -> None:
        """New or requeued runs: wake this worker and every other replica's."""
        self.notify_runs()
        self._notify_others()

    def _circuit_changed(self, name: str, is_open: bool) -> None:
        self.metrics.circuit_changed(name, is_open)
        if not is_open:
            self._claimable.changed()  # the runs it parked are about to be due

    def _run_ended(self, run_id: int, status: str) -> None:
        if status in FINISHED and run_id in self._active:
            self._finished.add(run_id)

    # ------------------------------------------------------------------ routing

    async def _route_loop(self) -> None:
        while True:
            if not await wait_until_set(self._events_ready, FALLBACK_POLL_SECONDS):
                self._scan = True  # nothing for a while: look for events nobody announced
            self._events_ready.clear()
            try:
                while self._arrived:
                    page = [self._arrived.popleft() for _ in range(min(500, len(self._arrived)))]
                    await self.route_events(page)
                if self._scan:
                    self._scan = False
                    # A short page: none were left (later ones set `_events_ready` again).
                    while await self.route_pending() == SCAN_PAGE:
                        pass
            except Exception as exc:  # the store is down: try again on the next wake
                log.error("worker.route_failed", error=str(exc))
                self._scan = True  # what was in hand is pending in the store
                await self._sleep(FALLBACK_POLL_SECONDS)
            finally:
                self._runs_ready.set()

    async def route_pending(self, limit: int = SCAN_PAGE) -> int:
        """Route every pending event (up to `limit`) in one commit; how many there were."""
        pending = await self.store.events.pending(limit)
        if pending:
            await self.route_events(pending)
        return len(pending)

    async def route_events(self, pending: Sequence[Event]) -> None:
        """Plan the runs of pending events and create them in one commit, claiming as many as
        there are free slots in the same commit. Thin events are fetched first (`Fetching`)."""
        pending = await self.fetching.hold(pending)
        routes: list[tuple[int, list[NewRun], str]] = []
        for event in pending:
            try:
                planned = plan(self.rules, event)
            except Exception:  # a bug must not leave the event pending, retried forever
                log.exception("event.route_failed", event_id=event.id)
                routes.append((event.id, [], EventStatus.ERROR))
                continue
            routes.append((event.id, planned, routed_status(planned)))
        free = self._free()
        self._reserved += free
        self._routing = free > 0  # its commit claims: the run loop leaves the claim to it
        try:
            mark = self._claimable.claiming()
            created, claimed = await self.store.runs.route_and_claim(
                routes, (self.owner, free, self.lease_seconds)
            )
            self._claimable.claimed(mark, free, len(claimed))
            for event, (_, planned, status), run_ids in zip(pending, routes, created, strict=True):
                if run_ids is None:
                    continue  # another replica routed it first: nothing to say
                if to_start := sum(new.status == RunStatus.PENDING for new in planned):
                    self.in_hand.keep(replace(event, status=status), to_start)
                # Debug: a line per event costs the hot path as much as routing it (bench/sustain).
                rules = [r.rule for r in planned]
                log.debug("event.routed", event_id=event.id, rules=rules, runs=run_ids)
            await self._start(claimed)
        finally:
            self._reserved -= free
            self._routing = False
        taken = {run.id for run in claimed}
        if any(run_id not in taken for run_ids in created for run_id in run_ids or ()):
            self.announce_runs()  # runs left for this worker's next claim or another replica

    async def route(self, event: Event) -> list[int]:
        """Route one event (as `route_pending` does a page); a thin one is fetched first: []."""
        if not await self.fetching.hold([event]):
            return []
        planned = plan(self.rules, event)
        return await self.store.runs.route(event.id, planned, routed_status(planned))

    async def replay(self, event: Event) -> list[int]:
        """Run the rules again on a stored event: new runs, new idempotency keys."""
        run_ids = await self.store.runs.add(plan(self.rules, event))
        self.announce_runs()
        return run_ids

    # ------------------------------------------------------------------ running

    async def _run_loop(self) -> None:
        while True:
            claimed: list[Run] = []
            free = self._free()
            if self._backlog and self._active and free < max(1, self.concurrency // 4):
                # Under a backlog, let a few more slots free up (at most a few ms): larger claims.
                await self._linger(max(1, self.concurrency // 4))
                free = self._free()
            if free > 0 and self._claimable.maybe and not self._routing:
                self._reserved += free
                try:
                    mark = self._claimable.claiming()
                    claimed = await self.store.runs.claim(self.owner, free, self.lease_seconds)
                    self._claimable.claimed(mark, free, len(claimed))
                    await self._start(claimed)
                except Exception as exc:
                    self._claimable.changed()  # try again after the next wait
                    log.error("worker.claim_failed", error=str(exc))
                finally:
                    self._reserved -= free
                self._backlog = bool(claimed) and len(claimed) == free  # only a claim can tell
                if self._backlog:
                    continue  # more runs are waiting: claim again as slots free up
            elif not self._claimable.maybe:  # a claim since (the routing's) took all there was
                self._backlog = False
            slot_free = len(self._active) < self.concurrency
            await self._claimable.wait(
                self._runs_ready, self.store.runs.next_due, slot_free=slot_free
            )

    async def _linger(self, slots: int) -> None:
        deadline = time.monotonic() + CLAIM_LINGER_SECONDS
        while self._free() < slots and (left := deadline - time.monotonic()) > 0:
            self._runs_ready.clear()
            await wait_until_set(self._runs_ready, left)

    def _free(self) -> int:
        busy = len(self._active) - self._finishing + self._reserved
        return max(0, self.concurrency - busy)

    async def _start(self, claimed: list[Run]) -> None:
        """Run what was claimed, after reading the events not in hand in one query."""
        missing = Counter(run.event_id for run in claimed if run.event_id not in self.in_hand)
        if missing:
            try:
                for event in await self.store.events.by_ids(set(missing)):
                    self.in_hand.keep(event, missing[event.id], claimed=True)
            except Exception as exc:  # each run reads its own event, or fails and retries
                log.warning("worker.events_read_failed", error=str(exc))
        for run in claimed:
            task = asyncio.create_task(self._execute_guarded(run), name=f"run-{run.id}")
            self._active[run.id] = task
            task.add_done_callback(functools.partial(self._done, run.id, run.ordering_key))

    def _done(self, run_id: int, key: str | None, _task: asyncio.Task[None]) -> None:
        full = len(self._active) >= self.concurrency  # the run loop waited without a slot
        self._active.pop(run_id, None)
        # A run that retries, waits or stops may be claimable again (or due); one that
        # finished, only the next run with its ordering key.
        changed = run_id not in self._finished or key is not None
        self._finished.discard(run_id)
        if changed:
            self._claimable.changed()
        if changed or full or self._backlog:
            self._runs_ready.set()  # a slot is free, and a claim may find a run for it

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            with contextlib.suppress(Exception):
                await self.store.runs.renew(self.owner, list(self._active), self.lease_seconds)

    async def _execute_guarded(self, run: Run) -> None:
        try:
            await self.execute(run)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or the store failing: retry the run later
            log.exception("run.crashed", run_id=run.id)
            with contextlib.suppress(Exception):
                await self.outcomes.retry_or_dead(run, f"internal error: {exc}", None)

    async def execute(self, run: Run) -> None:
        rule = self.rules.by_name.get(run.rule)
        event = self.in_hand.take(run.event_id) or await self.store.events.get(run.event_id)
        if rule is None or event is None:
            missing = f"rule {run.rule!r} is not loaded" if rule is None else "event is gone"
            await self.outcomes.end(run, RunStatus.FAILED, missing)
            return
        await self.dispatch.run(run, rule, event)
