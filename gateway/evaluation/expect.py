"""Checking a rule's `expect:` against one of its runs in the eval: each failed check named."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

from gateway.rules.expect import Expectation
from gateway.store import Run, Step
from gateway.store.status import StepStatus


class Failure(BaseModel):
    """One expectation that did not hold: for which event and rule, which check, and why."""

    event_id: int  # 0 for a fixture's event
    rule: str
    check: str
    detail: str
    fixture: str | None = None  # the rule's `tests:` event file the check was made on


def check(
    event_id: int, rule: str, expect: Expectation, run: Run, steps: list[Step]
) -> list[Failure]:
    """The failed checks of `expect` on `run` (whose journal is `steps`); [] if all hold."""
    calls = [
        (step.tool, step.arguments)
        for step in steps
        if step.kind == "tool" and step.tool and step.status != StepStatus.SKIPPED
    ]
    failed: list[tuple[str, str]] = []
    for wanted in expect.calls:
        if not any(tool == wanted.tool and _includes(args, wanted.args) for tool, args in calls):
            args = json.dumps(wanted.args, sort_keys=True)
            failed.append((f"calls: {wanted.tool} {args}", "no such call was proposed"))
    for tool_name in expect.no_calls:
        if any(tool == tool_name for tool, _ in calls):
            failed.append((f"no_calls: {tool_name}", "it was proposed"))
    if expect.max_cost is not None and run.cost > expect.max_cost:
        failed.append((f"max_cost: {expect.max_cost}", f"cost {run.cost:.6f}"))
    if expect.max_steps is not None and len(steps) > expect.max_steps:
        failed.append((f"max_steps: {expect.max_steps}", f"{len(steps)} steps"))
    if expect.answer_matches is not None:
        answer = _answer(steps)
        if answer is None or re.search(expect.answer_matches, answer) is None:
            failed.append((f"answer_matches: {expect.answer_matches}", f"answer {answer!r}"))
    return [Failure(event_id=event_id, rule=rule, check=c, detail=d) for c, d in failed]


def _includes(arguments: Any, wanted: dict[str, Any]) -> bool:
    return isinstance(arguments, dict) and all(arguments.get(k) == v for k, v in wanted.items())


def _answer(steps: list[Step]) -> str | None:
    """The text of the run's last model turn (the answer of an assistant run)."""
    turns = [step for step in steps if step.kind == "model"]
    if not turns:
        return None
    result = turns[-1].result
    text = result.get("text") if isinstance(result, dict) else None
    return text if isinstance(text, str) else None
