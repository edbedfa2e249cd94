"""The eval report: per event, the calls the live runs made and the candidate's runs
proposed, side by side with a diff; the expectations checked; the totals.

A pydantic model, so the JSON written by `--out` is its schema.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from gateway.assistant import policy as policies
from gateway.evaluation.expect import Failure, check
from gateway.evaluation.fixtures import Fixture
from gateway.redaction import REDACTED, Redactor
from gateway.rules.loader import RuleSet
from gateway.store import Event, Run, Step, Store
from gateway.store.records import pass_rate
from gateway.store.status import StepStatus


class ProposedCall(BaseModel):
    """A tool call a run made, or (in the eval) would have made."""

    rule: str
    tool: str
    arguments: Any
    status: str
    # The candidate's policy would have made this call wait for an operator's approval.
    approval: bool = False

    def line(self) -> str:
        return f"{self.tool} {json.dumps(self.arguments, sort_keys=True, default=str)}"


class Side(BaseModel):
    """What one side (live or candidate) did for an event."""

    runs: dict[str, str]  # rule → final status
    calls: list[ProposedCall]
    refusals: int
    approvals: int
    input_tokens: int
    output_tokens: int
    cost: float
    latency_ms: float


class ArgumentChange(BaseModel):
    """One argument of a call both sides made (the n-th call of `tool` on each) that differs:
    the readable half of the diff."""

    tool: str
    argument: str
    live: Any = None
    candidate: Any = None


class EventComparison(BaseModel):
    event_id: int
    source: str
    type: str
    live: Side
    candidate: Side
    changed: bool
    diff: list[str]
    changes: list[ArgumentChange] = []


class Totals(BaseModel):
    events: int
    changed: int
    cost_live: float
    cost_candidate: float
    latency_delta_ms: float
    expectations: int
    expectations_failed: int
    pass_rate: float | None


class EvalReport(BaseModel):
    # Set once the eval is kept in the eval store (gateway/evaluation/stored.py).
    id: int | None = None
    rules: str = ""
    events: list[EventComparison]
    failures: list[Failure]
    totals: Totals

    def redacted(self, redactor: Redactor) -> EvalReport:
        """A copy with secret-looking arguments hidden, as the run pages hide them (the diff
        made again from what is shown): what the dashboard and the admin API show."""
        copy = self.model_copy(deep=True)
        for event in copy.events:
            for call in (*event.live.calls, *event.candidate.calls):
                call.arguments = redactor.value(call.arguments)
            for change in event.changes:
                secret = redactor.is_secret(change.argument)
                change.live = REDACTED if secret else redactor.value(change.live)
                change.candidate = REDACTED if secret else redactor.value(change.candidate)
            event.diff = diff_lines(event.live.calls, event.candidate.calls)
        return copy

    def add_fixture(self, fixture: Fixture, failures: list[Failure]) -> None:
        """Count a rule file's test (`tests:`) and its failed checks in the report."""
        self.failures += [f.model_copy(update={"fixture": fixture.path}) for f in failures]
        totals = self.totals
        totals.expectations += 1
        totals.expectations_failed += bool(failures)
        totals.pass_rate = pass_rate(totals.expectations, totals.expectations_failed)


# A step whose call was never proposed as such: not part of what a run "did".
NOT_PROPOSED = (StepStatus.SKIPPED,)
REFUSALS = (StepStatus.REFUSED, StepStatus.INVALID)


async def compare(
    events: Sequence[Event],
    live: Store,
    live_runs: Mapping[int, list[Run]],
    candidate: Store,
    candidate_runs: Mapping[int, list[Run]],
    rules: RuleSet,
) -> EvalReport:
    """The report for `events`, their runs in each store keyed by the live event's id."""
    compared: list[EventComparison] = []
    failures: list[Failure] = []
    checked = 0
    for event in events:
        before = await _side(live, live_runs.get(event.id, []), None)
        after = await _side(candidate, candidate_runs.get(event.id, []), rules)
        for run in candidate_runs.get(event.id, []):
            rule = rules.by_name.get(run.rule)
            if rule is None or rule.expect is None:
                continue
            checked += 1
            steps = await candidate.steps.of_run(run.id)
            failures += check(event.id, rule.name, rule.expect, run, steps)
        old = [call.line() for call in before.calls]
        new = [call.line() for call in after.calls]
        diff = diff_lines(before.calls, after.calls)
        compared.append(
            EventComparison(
                event_id=event.id,
                source=event.source,
                type=event.type,
                live=before,
                candidate=after,
                changed=old != new,
                diff=diff,
                changes=argument_changes(before.calls, after.calls),
            )
        )
    failed_runs = len({(f.event_id, f.rule) for f in failures})
    totals = Totals(
        events=len(compared),
        changed=sum(c.changed for c in compared),
        cost_live=sum(c.live.cost for c in compared),
        cost_candidate=sum(c.candidate.cost for c in compared),
        latency_delta_ms=sum(c.candidate.latency_ms - c.live.latency_ms for c in compared),
        expectations=checked,
        expectations_failed=failed_runs,
        pass_rate=pass_rate(checked, failed_runs),
    )
    return EvalReport(events=compared, failures=failures, totals=totals)


def diff_lines(live: Sequence[ProposedCall], candidate: Sequence[ProposedCall]) -> list[str]:
    """A unified diff of the calls, one call (tool and arguments as JSON) a line."""
    old = [call.line() for call in live]
    new = [call.line() for call in candidate]
    return list(difflib.unified_diff(old, new, "live", "candidate", lineterm="", n=1))


def argument_changes(
    live: Sequence[ProposedCall], candidate: Sequence[ProposedCall]
) -> list[ArgumentChange]:
    """The arguments that differ between the n-th call of each tool on one side and the n-th
    call of the same tool on the other (calls only one side made are in the diff alone)."""
    changes: list[ArgumentChange] = []
    for tool in dict.fromkeys(call.tool for call in candidate):
        before = [call.arguments for call in live if call.tool == tool]
        after = [call.arguments for call in candidate if call.tool == tool]
        for old, new in zip(before, after, strict=False):
            if old == new:
                continue
            if not isinstance(old, dict) or not isinstance(new, dict):
                changes.append(ArgumentChange(tool=tool, argument="", live=old, candidate=new))
                continue
            for name in dict.fromkeys([*old, *new]):
                if old.get(name) != new.get(name):
                    changes.append(
                        ArgumentChange(
                            tool=tool, argument=name, live=old.get(name), candidate=new.get(name)
                        )
                    )
    return changes


async def _side(store: Store, runs: list[Run], rules: RuleSet | None) -> Side:
    calls: list[ProposedCall] = []
    latency = 0.0
    for run in runs:
        if run.started_at is not None and run.finished_at is not None:
            latency += (run.finished_at - run.started_at).total_seconds() * 1000
        rule = rules.by_name.get(run.rule) if rules is not None else None
        policy = rule.assistant.policy if rule is not None and rule.assistant else {}
        for step in await store.steps.of_run(run.id):
            if step.kind != "tool" or step.tool is None or step.status in NOT_PROPOSED:
                continue
            calls.append(_call(run, step, policy))
    return Side(
        runs={run.rule: run.status for run in runs},
        calls=calls,
        refusals=sum(call.status in REFUSALS for call in calls),
        approvals=sum(call.approval for call in calls),
        input_tokens=sum(run.input_tokens for run in runs),
        output_tokens=sum(run.output_tokens for run in runs),
        cost=sum(run.cost for run in runs),
        latency_ms=latency,
    )


def _call(run: Run, step: Step, policy: Mapping[str, Any]) -> ProposedCall:
    assert step.tool is not None
    approval = step.status == StepStatus.AWAITING_APPROVAL
    if step.status == StepStatus.SHADOWED and isinstance(step.arguments, dict):
        # Shadow mode records a call before asking for approval: the policy says if it would.
        approval = policies.check(step.tool, step.arguments, policy).needs_approval
    return ProposedCall(
        rule=run.rule,
        tool=step.tool,
        arguments=step.arguments,
        status=step.status,
        approval=approval,
    )
