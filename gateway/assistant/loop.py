"""The assistant loop: the model proposes tool calls, the gateway checks, journals and acts.

Every model turn and every call is a stored step, so a run rebuilds its conversation from the
journal after a crash: turns already stored are not asked again, calls already made are not
made again. The conversation continues across events through the thread key.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError

from gateway import tracing
from gateway.assistant import budget
from gateway.assistant import policy as policies
from gateway.assistant.backends import Item, ModelError, Turn
from gateway.assistant.items import call_output, is_step_of, placed, step_output, trim, turn_record
from gateway.assistant.limits import over_limit
from gateway.assistant.models import ModelProfile, cost
from gateway.errors import ConfigError, GatewayError
from gateway.mcp.catalogue import expand
from gateway.rules import templates
from gateway.rules.model import Rule
from gateway.rules.templates import TemplateError
from gateway.runs.journal import STOP, ToolRefused, nonce
from gateway.store import Run, Step
from gateway.store.records import call_digest
from gateway.store.status import SETTLED, RunStatus, StepStatus
from gateway.tools import describe_error

if TYPE_CHECKING:
    from gateway.assistant.container import Interpreter
    from gateway.assistant.runner import AssistantRunner

log = structlog.get_logger(__name__)


class Conversation:
    """One assistant run, rebuilt from its journal and driven to its end or its next pause."""

    def __init__(
        self, runner: AssistantRunner, run: Run, rule: Rule, scope: dict[str, Any]
    ) -> None:
        assert rule.assistant is not None
        self.runner = runner
        services = self.services = runner.services
        self.store = services.store
        self.journal = services.journal
        self.outcomes = services.outcomes
        self.metrics = services.metrics
        self.toolbox = services.toolbox
        self.run_ = run
        self.rule = rule
        self.spec = rule.assistant
        self.scope = scope
        names = expand(self.spec.tools, runner.tools)  # `SERVER.*` of an MCP server
        self.allowed = {name: runner.tools[name] for name in names}
        # Steps made but not journaled yet, for the next commit: the prompt until the first
        # turn, steps of calls without side effects until the next (a crash repeats those).
        self.unsaved: list[tuple[int, dict[str, Any]]] = []
        self.definitions = [services.toolbox.definition(tool) for tool in self.allowed.values()]
        self.hosted: Interpreter | None = None  # the hosted code_interpreter, if offered

    async def run(self, journal: list[Step]) -> None:
        run, spec = self.run_, self.spec
        history = await self._history()
        if spec.file_search:
            try:
                # The knowledge family's client: a gateway.knowledge.Library.
                library = await self.toolbox.client("knowledge")
                self.definitions.append(await library.file_search(spec.file_search))
            except GatewayError as exc:
                await self.outcomes.end(run, RunStatus.FAILED, f"file_search: {exc}")
                return
        if spec.code_interpreter is not None:
            try:
                self.hosted = self.runner.interpreter(run, spec, journal, self.unsaved)
            except ConfigError as exc:
                await self.outcomes.end(run, RunStatus.FAILED, f"code_interpreter: {exc}")
                return
        if journal:
            instructions = journal[0].result.get("instructions", "")
            own: list[Item] = list(journal[0].result["items"])  # this run's part of the thread
        else:
            try:
                prompt = str(templates.evaluate(spec.prompt, self.scope))
                instructions = str(templates.evaluate(spec.instructions, self.scope))
                if spec.context is not None:
                    query = str(templates.evaluate(spec.context.query, self.scope))
                    library = await self.toolbox.client("knowledge")
                    prompt = await library.context(
                        spec.context, query, prompt, self.store.knowledge
                    )
            except (TemplateError, GatewayError) as exc:
                await self.outcomes.end(run, RunStatus.FAILED, f"prompt: {exc}")
                return
            own = [{"type": "message", "role": "user", "content": prompt}]
            # Saved with the first model turn: until then, a restart renders it again, the same
            # (templates see the run's creation time as `now`).
            self.unsaved.append(
                (0, self._values("prompt", result={"items": own, "instructions": instructions}))
            )
        turns = 0
        tokens = 0
        invalid = 0
        spent = 0.0
        done: dict[str, Any] = {}  # call digest → result, to spot repeated calls
        # Calls the model asked for with no settled outcome yet, in order, at their positions.
        pending: list[tuple[int, dict[str, Any]]] = []
        last_turn: dict[str, Any] | None = None
        # A call is the step at its position (see `_placed`), never whatever step has its id:
        # models reuse ids, and a step matched by id would lend its approval to another call.
        at = {s.position: s for s in journal}
        position = max(at, default=0) + 1
        for step in journal[1:]:
            if step.kind != "model":
                continue
            turns += 1
            tokens += step.input_tokens + step.output_tokens
            spent += step.cost
            last_turn = step.result
            own += step.result["items"]
            for place, call in placed(step.position, step.result["calls"]):
                settled = at.get(place)
                if settled is not None and not is_step_of(settled, call):
                    await self._stop(
                        RunStatus.FAILED,
                        f"journal: step {place} is not call {call['call_id']} of the model turn "
                        f"at step {step.position}; not resuming a run whose journal disagrees",
                    )
                    return
                if settled is not None and settled.status in SETTLED:
                    own.append(call_output(call["call_id"], step_output(settled)))
                    invalid += settled.status in (StepStatus.INVALID, StepStatus.REFUSED)
                    if settled.status == StepStatus.SUCCEEDED and settled.tool:
                        done[call_digest(settled.tool, settled.arguments)] = settled.result
                else:
                    pending.append((place, call))
            position = max(position, step.position + 1 + len(step.result["calls"]))
        collect = bool(journal)  # a resumed run's container may hold files not fetched yet
        cited = (last_turn or {}).get("container_files") or []  # container files the turn cites
        while True:
            # Before the calls: an email.send of this turn attaches what the code made.
            if collect and (position := await self._hosted(position, cited)) is STOP:
                return
            for place, call in pending:
                outcome = await self._handle(call, place, at.get(place), done)
                if outcome is STOP:
                    return
                status, output = outcome
                invalid += status in (StepStatus.INVALID, StepStatus.REFUSED)
                own.append(call_output(call["call_id"], output))
            pending = []
            if last_turn is not None and not last_turn["calls"]:
                # Only after a crash between the last turn and the run's end: end it now.
                await self._stop(RunStatus.SUCCEEDED, None, own)
                return
            limit = over_limit(spec.limits, run, turns, tokens, spent, invalid, self.hosted)
            if limit:
                await self._stop(RunStatus.FAILED, f"limit reached: {limit}")
                return
            if await budget.enforce(self.runner.budgets, self.services, run, self.rule, self._stop):
                return
            if (position := await self._hosted(position, None)) is STOP:
                return
            turn = await self._turn(instructions, history + own, position, own)
            if turn is None:
                return
            if not (turn.calls or turn.code or turn.container_files):
                return  # the answer: recorded with the run's end in `_turn`
            collect, cited = bool(turn.code or turn.container_files), turn.container_files
            turns += 1
            tokens += turn.input_tokens + turn.output_tokens
            spent += cost(self._profile(), turn.input_tokens, turn.output_tokens)
            last_turn = turn_record(turn)
            own += turn.items
            pending = placed(position, last_turn["calls"])
            position += 1 + len(turn.calls)

    # ------------------------------------------------------------------ one model turn

    async def _turn(
        self, instructions: str, items: list[Item], position: int, own: list[Item]
    ) -> Turn | None:
        """One model turn, journaled; a turn without calls ends the run in the same commit."""
        run = self.run_
        clock = time.perf_counter()
        started = datetime.now(UTC)
        try:
            backend = self.runner.backend(self.spec.model)
            with tracing.span("model", model=self.spec.model, position=position) as current:
                turn = await backend.turn(instructions, items, self.definitions)
                if current is not None:
                    current.set_attribute("gateway.input_tokens", turn.input_tokens)
                    current.set_attribute("gateway.output_tokens", turn.output_tokens)
        except ConfigError as exc:
            await self._stop(RunStatus.FAILED, f"model: {exc}")
            return None
        except ModelError as exc:
            await self._model_failed(exc)
            return None
        price = cost(self._profile(), turn.input_tokens, turn.output_tokens)
        model = turn.model or self._profile().model
        metrics = self.metrics
        metrics.model_tokens.labels(run.rule, model, "input").inc(turn.input_tokens)
        metrics.model_tokens.labels(run.rule, model, "output").inc(turn.output_tokens)
        metrics.model_cost.labels(run.rule, model).inc(price)
        metrics.model_seconds.labels(model).observe(time.perf_counter() - clock)
        step = {
            **self._values("model", result=turn_record(turn)),
            "started_at": started,
            "model": model,
            "input_tokens": turn.input_tokens,
            "output_tokens": turn.output_tokens,
            "cost": price,
            "duration_ms": round((time.perf_counter() - clock) * 1000, 3),
        }
        new_steps = [*self.unsaved, (position, step)]
        self.unsaved.clear()
        usage = (turn.input_tokens, turn.output_tokens, price)
        if turn.calls or turn.code or turn.container_files:  # files collected before the end
            await self.store.steps.record(run.id, new_steps, usage=usage)
        else:
            thread = (run.thread_key, own + turn.items) if run.thread_key else None
            await self.store.steps.record(
                run.id, new_steps, RunStatus.SUCCEEDED, usage=usage, thread=thread
            )
            self.outcomes.ended(run, RunStatus.SUCCEEDED)
        log.info(
            "assistant.turn",
            calls=[c.tool for c in turn.calls],
            tokens=turn.input_tokens + turn.output_tokens,
        )
        return turn

    async def _model_failed(self, exc: ModelError, what: str = "model: ") -> None:
        if exc.retryable:
            await self.journal.save(self.run_, self.unsaved)  # before the run is let go
            await self.outcomes.retry_or_dead(self.run_, f"{what}{exc}", exc.retry_after)
        else:
            await self._stop(RunStatus.FAILED, f"{what}{exc}")

    async def _hosted(self, position: int, collect: list[Item] | None) -> Any:
        """The code interpreter's steps before a turn (`collect` None), or after one that ran
        code or cited files (what it cites): the next free position, or STOP if it stopped."""
        if self.hosted is None:
            return position
        try:
            if collect is not None:
                return await self.hosted.collect(position, collect or None)
            return await self.hosted.prepare(position, self.definitions)
        except ModelError as exc:  # worded "code_interpreter: ..."
            await self._model_failed(exc, "")
            return STOP

    # ------------------------------------------------------------------ one proposed call

    async def _handle(
        self, call: dict[str, Any], at: int, step: Step | None, done: dict[str, Any]
    ) -> Any:
        """Settle the call at position `at` (its journaled step, if any): `(status, output)`
        for the model, or STOP if the run paused."""
        run = self.run_
        name = call["name"].replace("__", ".")
        tool = self.allowed.get(name)

        async def settle(
            status: StepStatus, output: str, arguments: Any = None
        ) -> tuple[StepStatus, str]:
            values = {
                **self._values("tool", tool=name, arguments=arguments, call_id=call["call_id"]),
                "status": status,
                "error": output if status != StepStatus.DUPLICATE else None,
            }
            if step is None:  # nothing was called: journaled with the next model turn
                self.unsaved.append((at, values))
            else:
                await self.journal.save(run, self.unsaved)
                await self.store.steps.finish(run.id, at, values)
            return status, output

        if tool is None:
            allowed = ", ".join(sorted(self.allowed)) or "none"
            return await settle(
                StepStatus.INVALID, f"error: unknown tool {name!r}; available: {allowed}"
            )
        try:
            raw = json.loads(call["arguments"] or "{}")
            if not isinstance(raw, dict):
                raise ValueError("arguments must be a JSON object")
            arguments = tool.validate(raw)
        except (ValueError, ValidationError) as exc:
            detail = describe_error(exc) if isinstance(exc, ValidationError) else str(exc)
            return await settle(
                StepStatus.INVALID,
                f"error: invalid arguments for {name}: {detail}",
                call["arguments"],
            )
        decision = policies.check(name, arguments, self.spec.policy)
        if not decision.allowed:
            return await settle(
                StepStatus.REFUSED, f"error: refused by policy: {decision.reason}", arguments
            )
        digest = call_digest(name, arguments)
        if digest in done:
            earlier = json.dumps(done[digest], default=str)
            return await settle(
                StepStatus.DUPLICATE,
                f"already done earlier in this run (not repeated): {earlier}",
                arguments,
            )
        if self.rule.mode == "shadow" and tool.side_effects:
            return await settle(
                StepStatus.SHADOWED,
                f"shadow mode: {name} was not executed (it would have been)",
                arguments,
            )
        if decision.needs_approval:
            if step is None or step.status == StepStatus.AWAITING_APPROVAL:
                await self.journal.save(run, self.unsaved)
                if step is None:
                    await self.store.steps.start(
                        run.id,
                        at,
                        kind="tool",
                        tool=name,
                        arguments=arguments,
                        idempotency_key=f"{run.id}.{at}.{nonce()}",
                        status=StepStatus.AWAITING_APPROVAL,
                        call_id=call["call_id"],
                        arguments_digest=digest,
                    )
                await self.store.runs.pause(run.id, RunStatus.AWAITING_APPROVAL)
                log.info("assistant.awaiting_approval", tool=name, position=at)
                return STOP
            if step.status == StepStatus.REJECTED:
                because = f": {step.reason}" if step.reason else ""
                return await settle(
                    StepStatus.REJECTED, f"rejected by an operator{because}", arguments
                )
            if step.decision == "approved" and step.approved_digest != digest:
                # Checked again here, as the call is made: the journal records what was
                # proposed, and nothing runs that an operator did not see.
                log.warning("assistant.not_approved", tool=name, position=at)
                return await settle(
                    StepStatus.REFUSED,
                    f"error: not run: these are not the arguments approved (approved digest "
                    f"{step.approved_digest}, these {digest})",
                    arguments,
                )
        result = await self.journal.call_tool(
            run, at, tool, arguments, step, None, call_id=call["call_id"],
            refusal_ends_run=False, unsaved=self.unsaved,
        )  # fmt: skip
        if result is STOP:
            return STOP
        if isinstance(result, ToolRefused):
            return StepStatus.FAILED, f"error: {name} failed: {result.message}"
        done[digest] = result
        return StepStatus.SUCCEEDED, json.dumps(result, default=str)

    # ------------------------------------------------------------------ ending

    async def _stop(
        self, status: RunStatus, error: str | None, own: list[Item] | None = None
    ) -> None:
        """End the run (with the prompt if it was not saved yet, and its thread on success)."""
        run = self.run_
        thread = (run.thread_key, own) if run.thread_key and own is not None else None
        await self.store.steps.record(run.id, list(self.unsaved), status, error, thread=thread)
        self.unsaved.clear()
        self.outcomes.ended(run, status)

    async def _history(self) -> list[Item]:
        if not self.run_.thread_key:
            return []
        return trim(await self.store.threads.items(self.run_.thread_key, before_run=self.run_.id))

    def _profile(self) -> ModelProfile:
        return self.runner.profiles.get(self.spec.model) or ModelProfile(model="unknown")

    def _values(self, kind: str, **values: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "idempotency_key": f"{self.run_.id}.{kind}.{nonce()}",
            "status": StepStatus.SUCCEEDED,
            **values,
        }
