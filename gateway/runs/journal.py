"""The step journal: every tool call is journaled as a step under a stable idempotency key.

A side effect is journaled before it happens, so a retry or a restart never repeats one whose
outcome it cannot prove absent; a refusal fails the run or goes back to the model.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from gateway import tracing
from gateway.metrics import Metrics
from gateway.runs.circuit import Circuits, downstream
from gateway.runs.outcome import Outcomes
from gateway.runs.persist import persist
from gateway.runs.shutdown import hand_over
from gateway.store import Run, Step, Store
from gateway.store.status import RunStatus, StepStatus
from gateway.tools import Tool, Toolbox, ToolContext, ToolError

log = structlog.get_logger(__name__)


class _Stop:
    def __repr__(self) -> str:
        return "STOP"


# What `call_tool` returns when the run stopped (ended, or waits for a retry).
STOP: Any = _Stop()

# Steps of a run made but not journaled yet, (position, columns), for its next commit.
Unsaved = list[tuple[int, dict[str, Any]]]


@dataclass(frozen=True)
class ToolRefused:
    """A call the remote refused for good; its message goes back to the model."""

    message: str


def nonce() -> str:
    # Part of every idempotency key: a key must never repeat, even in a database restored
    # from an old backup whose run ids are handed out again.
    return secrets.token_hex(4)


class Journal:
    """Calls tools for runs, each call a journaled step; ends or retries the run as it goes."""

    def __init__(
        self,
        store: Store,
        toolbox: Toolbox,
        tools: Mapping[str, Tool],
        outcomes: Outcomes,
        metrics: Metrics,
        *,
        finishing: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
        circuits: Circuits | None = None,
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.toolbox = toolbox
        self.tools = tools
        self.outcomes = outcomes
        self.metrics = metrics
        # Held while a run's last step commits: the worker counts its slot as free meanwhile.
        self._finishing = finishing
        # Open circuits make runs wait; a draining worker starts no new call (hands it over).
        self.circuits = circuits
        self._draining = draining

    async def restore_files(self, run: Run, names: Sequence[str], journal: list[Step]) -> None:
        """Rebuild the files of a resumed run (they live in memory) from its journal; `names`
        are the tools the run may call."""
        files_of = self.outcomes.files
        if (
            run.fresh
            or run.id in files_of
            or not any((t := self.tools.get(name)) is not None and t.keeps_files for name in names)
        ):
            return
        files = files_of.setdefault(run.id, {})
        for step in journal:
            tool = self.tools.get(step.tool or "")
            if step.status != StepStatus.SUCCEEDED or tool is None:
                continue
            if tool.files_function is not None:  # from the journal: not called again
                files.update(tool.files_function(step.arguments or {}, step.result))
            elif tool.makes_files:
                context = self.toolbox.context(
                    tool, key=step.idempotency_key, run_id=run.id, files=files
                )
                await tool.call(context, step.arguments or {})

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
        unsaved: Unsaved | None = None,
    ) -> Any:
        """Call a tool exactly once across retries and crashes; `STOP` if the run stopped.

        A permanent refusal fails the run, or, with `refusal_ends_run=False` (an assistant's
        call, which the model may correct), is returned as a `ToolRefused`.

        `unsaved` are steps of the run not journaled yet: they are committed with this call's
        step, or before it for a call with side effects. Given `unsaved`, the step of a new
        call without side effects that returned is added to them instead of committed: it
        goes with the caller's next commit (an assistant's next model turn). A crash before
        then makes the call again, which a call without side effects allows.
        """
        defer = unsaved is not None
        unsaved = [] if unsaved is None else unsaved
        # Committed before a step is started, or the run handed over. A run an open circuit
        # holds makes its unsaved calls (none with side effects) again when it resumes.
        if unsaved and (tool.side_effects or step is not None or self._draining()):
            await self.save(run, unsaved)
        if self._draining():
            await hand_over(self.store.runs, run.id)
            return STOP
        if self.circuits is not None and await self.circuits.hold(
            run.id, downstream(tool.name, arguments)
        ):
            return STOP  # the downstream is failing: the run waits, spending no attempt
        key = step.idempotency_key if step is not None else f"{run.id}.{position}.{nonce()}"
        context = self.toolbox.context(
            tool,
            key=key,
            run_id=run.id,
            # setdefault: files a tool writes (report.csv) stay for later steps of the run.
            files=self.outcomes.files.setdefault(run.id, {}),
            store=self.store,
        )
        # An approved call has not run yet: waiting for the decision was no attempt at it.
        attempt = 1 if step is None else step.attempt + (step.status != StepStatus.APPROVED)
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
            unsaved=unsaved, defer=defer,
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
            await self._answered(call, failed=exc.retryable)
            return await self._failed(call, exc)
        except Exception as exc:  # an unexpected failure inside a handler: retry like any
            await self._answered(call, failed=True)
            values = call.step_values()
            error = f"{type(exc).__name__}: {exc}"
            await self._finish(call, {**values, "status": StepStatus.ERROR, "error": error})
            await self.outcomes.retry_or_dead(run, f"{tool.name}: {error}", None, tool.name)
            return STOP
        await self._answered(call, failed=False)
        values = call.step_values()
        seconds = self.metrics.child(self.metrics.step_seconds, tool.name, StepStatus.SUCCEEDED)
        seconds.observe(values["duration_ms"] / 1000)
        result = _jsonable(result)
        done = {**values, "status": StepStatus.SUCCEEDED, "result": result, "error": None}
        if call.deferrable:
            call.unsaved.append((position, done))
            return result
        # The run's work is done; only its last commit is left. Its slot counts as free, so
        # under a backlog a claim can join the same journal commit instead of the next one.
        with self._finishing() if call.end_run else contextlib.nullcontext():
            # The call happened: its result must be journaled, or a retry would make it again.
            await persist(lambda: self._finish(call, done, call.end_run))
        if call.end_run:
            self.outcomes.ended(run, call.end_run)
        return result

    async def _failed(self, call: _Call, exc: ToolError) -> Any:
        """A tool said no: for good (the run fails, or the model hears it), or for now."""
        run, position, tool = call.run, call.position, call.tool
        values = call.step_values()
        outcome = StepStatus.ERROR if exc.retryable else StepStatus.FAILED
        self.metrics.step_seconds.labels(tool.name, outcome).observe(values["duration_ms"] / 1000)
        step = {**values, "status": outcome, "error": str(exc)}
        if not exc.retryable and not call.refusal_ends_run:
            if call.deferrable:  # the model hears of it in its next turn, committed with it
                call.unsaved.append((position, step))
            else:
                await self._finish(call, step)
            return ToolRefused(str(exc))
        if not exc.retryable:
            await self._finish(call, step, RunStatus.FAILED, f"{tool.name}: {exc}")
            self.outcomes.ended(run, RunStatus.FAILED)
            return STOP
        await self._finish(call, step)
        await self.outcomes.retry_or_dead(run, f"{tool.name}: {exc}", exc.retry_after, tool.name)
        return STOP

    async def save(self, run: Run, unsaved: Unsaved) -> None:
        """Commit the steps of `run` not journaled yet, if any."""
        if unsaved:
            await self.store.steps.record(run.id, list(unsaved))
            unsaved.clear()

    async def _finish(
        self,
        call: _Call,
        values: dict[str, Any],
        run_status: RunStatus | None = None,
        error: str | None = None,
    ) -> None:
        """Journal the call's step, with the run's steps not journaled yet (a new step) or
        after them (a started one: they were committed before it started)."""
        run, position = call.run, call.position
        if call.new:
            steps = [*call.unsaved, (position, values)]
            await self.store.steps.record(run.id, steps, run_status, error)
            call.unsaved.clear()
        else:
            await self.store.steps.finish(run.id, position, values, run_status, error)

    async def _answered(self, call: _Call, *, failed: bool) -> None:
        """Tell the downstream's circuit how the call went (failed: in a way that may pass)."""
        if self.circuits is not None:
            await self.circuits.record(downstream(call.tool.name, call.arguments), failed=failed)

    async def record(
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
        """Journal a step that calls nothing (skipped, shadowed, failed before the call)."""
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
            self.outcomes.ended(run, run_status)


@dataclass
class _Call:
    """One call of a tool within a run, as `Journal.call_tool` prepared it."""

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
    unsaved: Unsaved  # the run's steps not journaled yet: committed with this one
    defer: bool  # the caller keeps `unsaved` for its next commit
    clock: float = field(default_factory=time.perf_counter)

    @property
    def deferrable(self) -> bool:
        """The step may wait for the caller's next commit: a new call without side effects
        that does not end the run, whose caller keeps `unsaved`."""
        return self.defer and self.new and self.end_run is None

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


def _jsonable(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=str))
