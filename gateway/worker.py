"""The worker: routes stored events into runs by the rules, and executes the runs.

Every tool call is journaled as a step before it happens, under a stable idempotency key, so
a retry or a restart never repeats a side effect whose outcome it cannot prove absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import secrets
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from pydantic import ValidationError

from gateway import tracing
from gateway.config import Config
from gateway.mcp.catalogue import Catalogue, tools_of
from gateway.metrics import Metrics
from gateway.nesting import READABLE_DEPTH, deeper_than
from gateway.rules import templates
from gateway.rules.loader import RuleSet
from gateway.rules.model import Rule
from gateway.rules.templates import TemplateError
from gateway.scheduler.periods import periods as calendar_periods
from gateway.store import Event, NewRun, Run, Step, Store, Stored
from gateway.store.notify import wait_until_set
from gateway.store.status import DONE, EventStatus, RunStatus, StepStatus
from gateway.tools import TOOLS, Tool, Toolbox, ToolContext, ToolError, describe_error

log = structlog.get_logger(__name__)

# Executes an assistant run; given by the assistant package when it is configured.
# (run, rule, event, template scope, the run's journal so far: [] for a fresh run)
AssistantExecutor = Callable[[Run, Rule, Event, dict[str, Any], list[Step]], Awaitable[None]]

# Only a fallback for work written by another process (CLI, another replica): in-process
# events and finished runs wake the worker at once.
FALLBACK_POLL_SECONDS = 1.0
# Events handed over by the writer and not yet routed, at most (the pending scan finds more).
ARRIVED_MAX = 4096
# Events kept for the runs about to start, so a run does not read its event back (oldest go).
ROUTED_MAX = 4096
# Under a backlog, how long the worker waits for more free slots to claim them together.
CLAIM_LINGER_SECONDS = 0.005


# What templates see of `event`: everything but its headers and body (`headers`, `payload`).
TEMPLATE_EVENT_FIELDS = ("id", "source", "provider", "type", "delivery_id", "status", "received_at")


def scope_for(event: Event, now: datetime | None = None) -> dict[str, Any]:
    """What templates see: `payload`, `event`, `headers`, `now`."""
    try:
        payload = orjson.loads(event.body)
    except orjson.JSONDecodeError:
        payload = event.body.decode("utf-8", "replace")
    else:
        if deeper_than(payload, READABLE_DEPTH):
            # Stored before max_json_depth existed: text, as a body that is not JSON, rather
            # than a structure `tojson` and the journal would recurse into and fail on.
            payload = event.body.decode("utf-8", "replace")
    info: dict[str, Any] = {key: getattr(event, key) for key in TEMPLATE_EVENT_FIELDS}
    # `periods.last_week.start_date` and the like: around the fire time, in the rule's zone,
    # for a scheduled event; around the arrival, in UTC, for any other.
    anchor, zone = event.received_at, "UTC"
    if event.source == "schedule" and isinstance(payload, dict):
        fired = payload.get("fired_at")
        info["fired_at"] = datetime.fromisoformat(fired) if isinstance(fired, str) else None
        info["manual"] = bool(payload.get("manual"))
        anchor = info["fired_at"] or anchor
        zone = str(payload.get("timezone") or zone)
    return {
        "payload": payload,
        "event": info,
        "headers": event.headers,
        "now": now or datetime.now(UTC),
        "periods": LazyPeriods(anchor, zone),
    }


class LazyPeriods(Mapping[str, Any]):
    """`periods` for templates, computed on first use: most rules never look at it."""

    def __init__(self, anchor: datetime, zone: str) -> None:
        self._anchor, self._zone = anchor, zone
        self._computed: dict[str, Any] | None = None

    def _all(self) -> dict[str, Any]:
        if self._computed is None:
            self._computed = _periods(self._anchor, self._zone)
        return self._computed

    def __getitem__(self, key: str) -> Any:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _periods(anchor: datetime, zone: str) -> dict[str, dict[str, str]]:
    try:
        return calendar_periods(anchor, zone)
    except (ValueError, KeyError):  # a zone unknown here (checked at load): fall back to UTC
        return calendar_periods(anchor, "UTC")


def matching_rules(rules: RuleSet, event: Event) -> list[Rule]:
    if event.source == "schedule":
        rule = rules.by_name.get(event.type)
        return [rule] if rule is not None and rule.enabled and rule.schedule else []
    return rules.matching(event.source, event.type)


def plan_runs(rules: RuleSet, event: Event) -> list[NewRun]:
    """The runs an event starts: one per matching rule whose `when` holds.

    A rule whose templates fail on this event still gets a run, already failed, naming the
    error: nothing is dropped silently.
    """
    scope = scope_for(event)
    planned = []
    for rule in matching_rules(rules, event):
        base = NewRun(event_id=event.id, rule=rule.name, kind=rule.kind, mode=rule.mode)
        try:
            if rule.when is not None and not templates.truthy(templates.evaluate(rule.when, scope)):
                continue
            key = templates.evaluate(rule.order_by, scope) if rule.order_by else None
            thread = None
            if rule.assistant is not None and rule.assistant.thread:
                thread = str(templates.evaluate(rule.assistant.thread, scope))
        except TemplateError as exc:
            planned.append(replace(base, status=RunStatus.FAILED, error=f"when/order_by: {exc}"))
            continue
        ordering = None if key is None or key == "" else f"{rule.name}:{key}"
        if ordering is None and thread:
            # Runs continuing one conversation must not interleave their turns.
            ordering = f"thread:{thread}"
        planned.append(replace(base, ordering_key=ordering, thread_key=thread))
    return planned


def routed_status(planned: Sequence[NewRun]) -> EventStatus:
    """What routing an event makes of it: routed if it starts runs, else unmatched."""
    return EventStatus.ROUTED if planned else EventStatus.UNMATCHED


class Worker:
    """Routes and runs, in the gateway process (or in a worker-only replica)."""

    def __init__(
        self,
        store: Store,
        rules: RuleSet,
        config: Config,
        *,
        assistant: AssistantExecutor | None = None,
        tools: dict[str, Tool] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        metrics: Metrics | None = None,
        notify: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        # Tells the other replicas that there are new runs (NOTIFY on PostgreSQL).
        self._notify_others = notify or (lambda: None)
        self.lease_seconds = config.worker.lease_seconds
        self.metrics = metrics or Metrics()
        self.rules = rules
        self.config = config
        self.assistant = assistant
        # Built-in tools, and the tools of the MCP servers under `mcp:` once listed.
        self.tools = Catalogue(tools if tools is not None else TOOLS, config.mcp)
        # The families' settings and the clients their calls share, closed by `stop`.
        self.toolbox = Toolbox(config.handlers, self.tools)
        self.concurrency = config.worker.concurrency
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._sleep = sleep
        self._events_ready = asyncio.Event()
        self._runs_ready = asyncio.Event()
        self._active: dict[int, asyncio.Task[None]] = {}
        # Slots promised to a claim in flight (routing claims too), so two claims never
        # take more runs than there are slots.
        self._reserved = 0
        # Runs whose last step is done and whose final commit is on its way (see `_call`).
        self._finishing = 0
        # The last claim filled every free slot: more runs are waiting.
        self._backlog = False
        # Events this process just stored, handed over by the writer: routed without being
        # read back. The pending scan finds whatever does not fit, and other processes' events.
        self._arrived: deque[Event] = deque()
        self._scan = True
        # Events of runs routed or claimed here, so running them needs no read (ROUTED_MAX).
        self._routed: OrderedDict[int, Event] = OrderedDict()
        # Files produced during a run (name → bytes), for later steps such as an attachment.
        self.files: dict[int, dict[str, bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Callbacks told about each run that ends (metrics, tests).
        self.on_run_end: list[Callable[[int, str], None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.store.dialect.single_writer:
            # One worker per SQLite database: whatever was running belonged to a dead process.
            resumed = await self.store.runs.expire_leases()
            if resumed:
                log.info("worker.resume", runs=resumed)
        self._tasks = [
            asyncio.create_task(self._route_loop(), name="worker-route"),
            asyncio.create_task(self._run_loop(), name="worker-runs"),
            asyncio.create_task(self._renew_loop(), name="worker-leases"),
        ]
        self.notify_events()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        active = list(self._active.values())
        for task in active:
            task.cancel()
        # A cancelled run keeps its journal; its lease expires and it resumes after restart.
        await asyncio.gather(*active, return_exceptions=True)
        self._tasks = []
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

    def notify_runs(self) -> None:
        self._runs_ready.set()

    def announce_runs(self) -> None:
        """New or requeued runs: wake this worker and every other replica's."""
        self._runs_ready.set()
        self._notify_others()

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
                    while await self.route_pending():
                        pass
            except Exception as exc:  # the store is down: try again on the next wake
                log.error("worker.route_failed", error=str(exc))
                self._scan = True  # what was in hand is pending in the store
                await self._sleep(FALLBACK_POLL_SECONDS)

    async def route_pending(self, limit: int = 500) -> int:
        """Route every pending event (up to `limit`) in one commit; how many there were."""
        pending = await self.store.events.pending(limit)
        if pending:
            await self.route_events(pending)
        return len(pending)

    async def route_events(self, pending: Sequence[Event]) -> None:
        """Plan the runs of pending events and create them in one commit, claiming as many as
        there are free slots in the same commit."""
        routes: list[tuple[int, list[NewRun], str]] = []
        for event in pending:
            try:
                planned = plan_runs(self.rules, event)
            except Exception:  # a bug must not leave the event pending, retried forever
                log.exception("event.route_failed", event_id=event.id)
                routes.append((event.id, [], EventStatus.ERROR))
                continue
            routes.append((event.id, planned, routed_status(planned)))
        free = self._free()
        self._reserved += free
        try:
            created, claimed = await self.store.runs.route_and_claim(
                routes, (self.owner, free, self.lease_seconds)
            )
            for event, (_, planned, status), run_ids in zip(pending, routes, created, strict=True):
                if run_ids:
                    self._routed[event.id] = replace(event, status=status)
                log.info(
                    "event.routed",
                    event_id=event.id,
                    rules=[r.rule for r in planned],
                    runs=run_ids,
                )
            await self._start(claimed)
        finally:
            self._reserved -= free
        taken = {run.id for run in claimed}
        if any(run_id not in taken for run_ids in created for run_id in run_ids):
            self.announce_runs()  # runs left for this worker's next claim or another replica

    async def route(self, event: Event) -> list[int]:
        """Route one event (as `route_pending` does a page)."""
        planned = plan_runs(self.rules, event)
        return await self.store.runs.route(event.id, planned, routed_status(planned))

    async def replay(self, event: Event) -> list[int]:
        """Run the rules again on a stored event: new runs, new idempotency keys."""
        run_ids = await self.store.runs.add(plan_runs(self.rules, event))
        self.announce_runs()
        return run_ids

    # ------------------------------------------------------------------ running

    async def _run_loop(self) -> None:
        while True:
            claimed: list[Run] = []
            free = self._free()
            if self._backlog and self._active and free < max(1, self.concurrency // 4):
                # Under a backlog, let a few more slots free up before claiming (a few ms at
                # most): fewer, larger claim commits when runs are short (bench/drain), and
                # hardly a delay when they are long (bench/assistants).
                await self._linger(max(1, self.concurrency // 4))
                free = self._free()
            if free > 0:
                self._reserved += free
                try:
                    claimed = await self.store.runs.claim(self.owner, free, self.lease_seconds)
                    await self._start(claimed)
                except Exception as exc:
                    log.error("worker.claim_failed", error=str(exc))
                finally:
                    self._reserved -= free
            self._backlog = bool(claimed) and len(claimed) == free
            if self._backlog:
                continue  # there may be more: claim again once slots free up
            await self._wait_for_work()

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
        missing = {run.event_id for run in claimed if run.event_id not in self._routed}
        if missing:
            try:
                for event in await self.store.events.by_ids(missing):
                    self._routed[event.id] = event
            except Exception as exc:  # each run reads its own event, or fails and retries
                log.warning("worker.events_read_failed", error=str(exc))
        while len(self._routed) > ROUTED_MAX:
            self._routed.popitem(last=False)
        for run in claimed:
            task = asyncio.create_task(self._execute_guarded(run), name=f"run-{run.id}")
            self._active[run.id] = task
            task.add_done_callback(functools.partial(self._done, run.id))

    def _done(self, run_id: int, _task: asyncio.Task[None]) -> None:
        self._active.pop(run_id, None)
        # A finished run frees a slot, and perhaps the next run with its ordering key.
        self._runs_ready.set()

    async def _wait_for_work(self) -> None:
        timeout = FALLBACK_POLL_SECONDS
        if len(self._active) < self.concurrency:
            try:
                due = await self.store.runs.next_due()
            except Exception as exc:  # the store is down: poll again after the fallback wait
                log.error("worker.next_due_failed", error=str(exc))
                due = None
            if due is not None:
                timeout = min(timeout, max(0.0, (due - datetime.now(UTC)).total_seconds()))
        await wait_until_set(self._runs_ready, timeout)
        self._runs_ready.clear()

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
                await self.retry_or_dead(run, f"internal error: {exc}", None)

    async def execute(self, run: Run) -> None:
        started = time.perf_counter()
        rule = self.rules.by_name.get(run.rule)
        event = self._routed.get(run.event_id) or await self.store.events.get(run.event_id)
        if rule is None or event is None:
            missing = f"rule {run.rule!r} is not loaded" if rule is None else "event is gone"
            await self.end(run, RunStatus.FAILED, missing)
            return
        scope = scope_for(event, now=run.created_at)
        structlog.contextvars.bind_contextvars(run_id=run.id, event_id=event.id)
        with (
            tracing.span("event", event_id=event.id, source=event.source, type=event.type),
            tracing.span("run", run_id=run.id, rule=run.rule, attempt=run.attempt),
        ):
            await self._execute(run, rule, event, scope, started)

    async def _execute(
        self, run: Run, rule: Rule, event: Event, scope: dict[str, Any], started: float
    ) -> None:
        # A resumed run's journal, read once: its files are rebuilt from it, then it resumes.
        journal = [] if run.fresh else await self.store.steps.of_run(run.id)
        try:
            await self.tools.prepare(tools_of(rule))  # lists the MCP servers the rule names
        except ToolError as exc:
            if exc.retryable:
                await self.retry_or_dead(run, str(exc), exc.retry_after)
            else:
                await self.end(run, RunStatus.FAILED, str(exc))
            return
        await self._restore_files(run, rule, journal)
        try:
            if rule.assistant is not None:
                if self.assistant is None:
                    await self.end(run, RunStatus.FAILED, "no assistant backend is configured")
                    return
                await self.assistant(run, rule, event, scope, journal)
                return
            await self._run_actions(run, rule, scope, journal)
        finally:
            log.debug("run.executed", ms=round((time.perf_counter() - started) * 1000, 2))
            structlog.contextvars.unbind_contextvars("run_id", "event_id")

    async def _restore_files(self, run: Run, rule: Rule, journal: list[Step]) -> None:
        """Rebuild the files of a resumed run (they live in memory) from its journal."""
        names = rule.assistant.tools if rule.assistant else [a.tool for a in rule.actions]
        if (
            run.fresh
            or run.id in self.files
            or not any((t := self.tools.get(name)) is not None and t.makes_files for name in names)
        ):
            return
        files = self.files.setdefault(run.id, {})
        for step in journal:
            tool = self.tools.get(step.tool or "")
            if step.status == StepStatus.SUCCEEDED and tool is not None and tool.makes_files:
                context = self.toolbox.context(
                    tool, key=step.idempotency_key, run_id=run.id, files=files
                )
                await tool.call(context, step.arguments or {})

    async def _run_actions(
        self, run: Run, rule: Rule, scope: dict[str, Any], steps: list[Step]
    ) -> None:
        journal = {step.position: step for step in steps}
        results: dict[str, Any] = {}
        scope = {**scope, "results": results}
        last = len(rule.actions) - 1
        for position, action in enumerate(rule.actions):
            step = journal.get(position)
            name = action.name or action.tool
            end_run = RunStatus.SUCCEEDED if position == last else None
            if step is not None and step.status in DONE:
                results[name] = step.result
                if end_run:
                    await self.end(run, end_run)
                continue
            tool = self.tools.get(action.tool)
            if tool is None:
                await self.end(run, RunStatus.FAILED, f"unknown tool {action.tool!r}")
                return
            try:
                skip = (
                    step is None
                    and action.when is not None
                    and not templates.truthy(templates.evaluate(action.when, scope))
                )
                if skip:
                    await self._record(run, position, tool, None, StepStatus.SKIPPED, end_run)
                    continue
                arguments = (
                    step.arguments
                    if step is not None
                    else templates.render_arguments(action.arguments, scope, tool.html_arguments)
                )
                arguments = tool.validate(arguments)
            except (TemplateError, ValidationError) as exc:
                error = describe_error(exc) if isinstance(exc, ValidationError) else str(exc)
                await self._record(
                    run,
                    position,
                    tool,
                    None,
                    StepStatus.FAILED,
                    RunStatus.FAILED,
                    error=f"{action.tool}: {error}",
                )
                return
            if rule.mode == "shadow" and tool.side_effects:
                # Shadow mode: record what would have been done, do nothing.
                shadow = {"shadow": True, "would_call": tool.name}
                await self._record(
                    run, position, tool, arguments, StepStatus.SHADOWED, end_run, shadow
                )
                results[name] = shadow
                continue
            outcome = await self.call_tool(run, position, tool, arguments, step, end_run)
            if outcome is _STOP:
                return
            results[name] = outcome

    async def call_tool(
        self,
        run: Run,
        position: int,
        tool: Tool,
        arguments: dict[str, Any],
        step: Step | None,
        end_run: RunStatus | None,
        *,
        kind: str = "tool",
        call_id: str | None = None,
        refusal_ends_run: bool = True,
    ) -> Any:
        """Call a tool exactly once across retries and crashes; `STOP` if the run stopped.

        A permanent refusal fails the run, or, with `refusal_ends_run=False` (an assistant's
        call, which the model may correct), is returned as a `ToolRefused`.
        """
        key = step.idempotency_key if step is not None else f"{run.id}.{position}.{nonce()}"
        context = self.toolbox.context(
            tool,
            key=key,
            run_id=run.id,
            # setdefault: files a tool writes (report.csv) stay for later steps of the run.
            files=self.files.setdefault(run.id, {}),
            store=self.store,
        )
        attempt = (step.attempt + 1) if step is not None else 1
        if tool.side_effects:
            # Journal first: from here on, a crash leaves an outcome we must check, not guess.
            if step is None:
                await self.store.steps.start(
                    run.id,
                    position,
                    kind=kind,
                    tool=tool.name,
                    arguments=arguments,
                    idempotency_key=key,
                    status=StepStatus.STARTED,
                    attempt=attempt,
                    call_id=call_id,
                )
            else:
                await self.store.steps.update(
                    run.id, position, status=StepStatus.STARTED, attempt=attempt, error=None
                )
        call = _Call(
            run, position, tool, arguments, step, end_run, context, key, attempt, kind, call_id,
            new=not tool.side_effects and step is None, refusal_ends_run=refusal_ends_run,
        )  # fmt: skip
        with tracing.span("tool", tool=tool.name, position=position, attempt=attempt):
            return await self._call(call)

    async def _call(self, call: _Call) -> Any:
        run, position, tool, arguments = call.run, call.position, call.tool, call.arguments
        try:
            result = None
            # An approved step was never tried: its outcome is not unknown, nothing to recover.
            tried = call.step is not None and call.step.status != StepStatus.APPROVED
            if tried and tool.side_effects and tool.recover_function is not None:
                result = await tool.recover_function(call.context, arguments)
                if result is not None:
                    log.info("step.recovered", tool=tool.name, key=call.key)
            if result is None:
                result = await tool.call(call.context, arguments)
        except ToolError as exc:
            values = call.step_values()
            outcome = StepStatus.ERROR if exc.retryable else StepStatus.FAILED
            self.metrics.step_seconds.labels(tool.name, outcome).observe(
                values["duration_ms"] / 1000
            )
            if not exc.retryable and not call.refusal_ends_run:
                await self.store.steps.finish(
                    run.id,
                    position,
                    {**values, "status": StepStatus.FAILED, "error": str(exc)},
                    new=call.new,
                )
                return ToolRefused(str(exc))
            if not exc.retryable:
                await self.store.steps.finish(
                    run.id,
                    position,
                    {**values, "status": StepStatus.FAILED, "error": str(exc)},
                    RunStatus.FAILED,
                    f"{tool.name}: {exc}",
                    new=call.new,
                )
                self.ended(run, RunStatus.FAILED)
                return _STOP
            await self.store.steps.finish(
                run.id,
                position,
                {**values, "status": StepStatus.ERROR, "error": str(exc)},
                new=call.new,
            )
            await self.retry_or_dead(run, f"{tool.name}: {exc}", exc.retry_after)
            return _STOP
        except Exception as exc:  # an unexpected failure inside a handler: retry like any
            values = call.step_values()
            error = f"{type(exc).__name__}: {exc}"
            await self.store.steps.finish(
                run.id,
                position,
                {**values, "status": StepStatus.ERROR, "error": error},
                new=call.new,
            )
            await self.retry_or_dead(run, f"{tool.name}: {error}", None)
            return _STOP
        values = call.step_values()
        self.metrics.step_seconds.labels(tool.name, StepStatus.SUCCEEDED).observe(
            values["duration_ms"] / 1000
        )
        result = _jsonable(result)
        if call.end_run:
            # The run's work is done; only its last commit is left. Its slot counts as free, so
            # under a backlog a claim can join the same journal commit instead of the next one.
            self._finishing += 1
            if self._backlog:
                self._runs_ready.set()
        try:
            await self.store.steps.finish(
                run.id,
                position,
                {**values, "status": StepStatus.SUCCEEDED, "result": result, "error": None},
                call.end_run,
                new=call.new,
            )
        finally:
            if call.end_run:
                self._finishing -= 1
        if call.end_run:
            self.ended(run, call.end_run)
        return result

    async def _record(
        self,
        run: Run,
        position: int,
        tool: Tool,
        arguments: dict[str, Any] | None,
        status: StepStatus,
        run_status: RunStatus | None,
        result: Any = None,
        *,
        error: str | None = None,
    ) -> None:
        await self.store.steps.finish(
            run.id,
            position,
            {
                "kind": "tool",
                "tool": tool.name,
                "arguments": arguments,
                "idempotency_key": f"{run.id}.{position}.{nonce()}",
                "status": status,
                "result": result,
                "error": error,
            },
            run_status,
            error,
            new=True,
        )
        if run_status:
            self.ended(run, run_status)

    async def retry_or_dead(self, run: Run, error: str, retry_after: float | None) -> None:
        worker = self.config.worker
        if run.attempt >= worker.max_attempts:
            await self.end(run, RunStatus.DEAD, f"gave up after {run.attempt} attempts: {error}")
            return
        delay = min(worker.backoff_max, worker.backoff_base * 2 ** (run.attempt - 1))
        delay *= 0.5 + random.random() / 2  # jitter: retries of many runs do not align
        if retry_after is not None:
            delay = max(delay, retry_after)
        at = datetime.now(UTC) + timedelta(seconds=delay)
        await self.store.runs.retry_later(run.id, at, error)
        self.metrics.retries.labels(run.rule).inc()
        log.warning("run.retry", attempt=run.attempt, delay=round(delay, 3), error=error)
        self.notify_runs()

    async def end(self, run: Run, status: RunStatus, error: str | None = None) -> None:
        await self.store.runs.finish(run.id, status, error)
        self.ended(run, status)

    def ended(self, run: Run, status: RunStatus) -> None:
        self.files.pop(run.id, None)
        log.info("run.ended", run_id=run.id, rule=run.rule, status=status)
        self.metrics.runs.labels(run.rule, status).inc()
        for callback in self.on_run_end:
            callback(run.id, status)


@dataclass
class _Call:
    """One call of a tool within a run, as `Worker.call_tool` prepared it."""

    run: Run
    position: int
    tool: Tool
    arguments: dict[str, Any]
    step: Step | None  # the journaled step of an earlier attempt, if any
    end_run: RunStatus | None  # the run's status once this call succeeds (its last step)
    context: ToolContext[Any, Any]
    key: str
    attempt: int
    kind: str
    call_id: str | None
    new: bool  # no step was journaled before the call: the step is inserted whole after it
    refusal_ends_run: bool
    clock: float = field(default_factory=time.perf_counter)

    def step_values(self) -> dict[str, Any]:
        """The step's columns once the call returned: timing, and all of it if `new`."""
        values: dict[str, Any] = {
            "duration_ms": round((time.perf_counter() - self.clock) * 1000, 3),
            "attempt": self.attempt,
        }
        if self.new:
            values |= {
                "kind": self.kind,
                "tool": self.tool.name,
                "arguments": self.arguments,
                "idempotency_key": self.key,
                "call_id": self.call_id,
            }
        return values


class _Stop:
    def __repr__(self) -> str:
        return "STOP"


# What `call_tool` returns when the run stopped (ended, or waits for a retry).
STOP: Any = _Stop()
_STOP = STOP


@dataclass(frozen=True)
class ToolRefused:
    """A call the remote refused for good; its message goes back to the model."""

    message: str


def nonce() -> str:
    # Part of every idempotency key: a key must never repeat, even in a database restored
    # from an old backup whose run ids are handed out again.
    return secrets.token_hex(4)


def _jsonable(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=str))
