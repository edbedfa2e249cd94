"""Direct-action runs: a rule's `actions`, called in order, each one a journaled step.

A resumed run skips the steps already done and calls again, under the same key, the one
whose outcome is unknown.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gateway.rules import templates
from gateway.rules.model import Rule
from gateway.rules.templates import TemplateError
from gateway.runs.executor import RunServices
from gateway.runs.journal import STOP
from gateway.store import Event, Run, Step
from gateway.store.status import DONE, RunStatus, StepStatus
from gateway.tools import describe_error


class ActionsExecutor:
    """Executes runs of rules with `actions`."""

    def __init__(self, services: RunServices) -> None:
        self.journal = services.journal
        self.outcomes = services.outcomes
        self.tools = services.tools

    def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def execute(
        self, run: Run, rule: Rule, event: Event, scope: dict[str, Any], steps: list[Step]
    ) -> None:
        await self.journal.restore_files(run, [a.tool for a in rule.actions], steps)
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
                    await self.outcomes.end(run, end_run)
                continue
            tool = self.tools.get(action.tool)
            if tool is None:
                await self.outcomes.end(run, RunStatus.FAILED, f"unknown tool {action.tool!r}")
                return
            try:
                skip = (
                    step is None
                    and action.when is not None
                    and not templates.truthy(templates.evaluate(action.when, scope))
                )
                if skip:
                    await self.journal.record(
                        run, position, tool, None, StepStatus.SKIPPED, end_run
                    )
                    continue
                arguments = (
                    step.arguments
                    if step is not None
                    else templates.render_arguments(action.arguments, scope, tool.html_arguments)
                )
                arguments = tool.validate(arguments)
            except (TemplateError, ValidationError) as exc:
                error = describe_error(exc) if isinstance(exc, ValidationError) else str(exc)
                await self.journal.record(
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
                await self.journal.record(
                    run, position, tool, arguments, StepStatus.SHADOWED, end_run, shadow
                )
                results[name] = shadow
                continue
            outcome = await self.journal.call_tool(run, position, tool, arguments, step, end_run)
            if outcome is STOP:
                return
            results[name] = outcome
