"""What an operator does to the gateway's work: replay, retry, approve, reject, fire, reload.

One implementation for the admin API, the dashboard and the CLI; each edge maps the errors
(`NotFound`, `IllegalState`, `UnknownRule`, from `gateway.errors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from gateway.errors import IllegalState, NotFound, NotWhatWasShown, UnknownRule
from gateway.rules.loader import RuleSet
from gateway.rules.model import Rule
from gateway.rules.plan import plan
from gateway.store import Run, Step, Store
from gateway.store.records import call_digest
from gateway.store.status import EventStatus, RunStatus, StepStatus
from gateway.worker import Worker

if TYPE_CHECKING:
    from gateway.runtime import Gateway

__all__ = [
    "IllegalState",
    "NotFound",
    "NotWhatWasShown",
    "Replayed",
    "UnknownRule",
    "approve",
    "decide",
    "fire",
    "reject",
    "reload_rules",
    "replay",
    "retry",
    "run",
    "scheduled_rule",
    "step",
]
log = structlog.get_logger(__name__)
# Runs an operator may send round again: finished without success.
RETRYABLE = (RunStatus.FAILED, RunStatus.DEAD)


@dataclass(frozen=True)
class Replayed:
    event_id: int
    run_ids: list[int]
    # A thin event that had failed to fetch: fetched anew, routed once fetched.
    fetching: bool = False


async def replay(
    store: Store, rules: RuleSet, event_id: int, worker: Worker | None = None
) -> Replayed:
    """Run the rules again on a stored event: new runs, new idempotency keys."""
    event = await store.events.get(event_id)
    if event is None:
        raise NotFound("event", event_id)
    if event.pruned:
        detail = f"event {event_id}'s body was pruned: `gateway archive restore` brings it back"
        raise IllegalState("event", event_id, detail)
    if event.status == EventStatus.FETCHING:
        detail = f"event {event_id} is still fetching its object: it is routed once fetched"
        raise IllegalState("event", event_id, detail)
    if event.status == EventStatus.FETCH_FAILED:
        # Its rules never ran: fetch it anew (and route it once fetched) rather than plan now.
        await store.fetches.restart(event_id)
        if worker is not None:
            worker.fetching.wake()
        return Replayed(event_id, [], fetching=True)
    if worker is not None and worker.rules is rules:
        return Replayed(event_id, await worker.replay(event))
    run_ids = await store.runs.add(plan(rules, event))
    if worker is not None:
        worker.announce_runs()
    return Replayed(event_id, run_ids)


async def run(store: Store, run_id: int) -> Run:
    """The run `run_id`, or `NotFound`."""
    found = await store.runs.get(run_id)
    if found is None:
        raise NotFound("run", run_id)
    return found


async def step(store: Store, step_id: int) -> Step:
    """The step `step_id`, or `NotFound`."""
    found = await store.steps.get(step_id)
    if found is None:
        raise NotFound("step", step_id)
    return found


def scheduled_rule(rules: RuleSet, name: str) -> Rule:
    """The enabled scheduled rule `name`, or `UnknownRule` naming those there are."""
    found = next((r for r in rules.scheduled if r.name == name), None)
    if found is None:
        known = ", ".join(r.name for r in rules.scheduled) or "none"
        raise UnknownRule(f"no enabled scheduled rule named {name!r} (known: {known})")
    return found


async def fire(store: Store, rule: Rule) -> int:
    """Fire a scheduled rule now, outside its schedule: a new manual event; its id."""
    from gateway.scheduler import fire as fire_now

    return (await fire_now(store, rule)).id


async def retry(store: Store, run_id: int, worker: Worker | None = None) -> Run:
    """Queue a failed or dead run again: finished steps are kept, the rest resume."""
    run = await store.runs.get(run_id)
    if run is None:
        raise NotFound("run", run_id)
    if run.status not in RETRYABLE:
        raise IllegalState(
            "run", run_id, f"run {run_id} is {run.status}: only failed or dead runs are retried"
        )
    if not await store.runs.requeue(run_id, reset_attempts=True):
        raise IllegalState("run", run_id, f"run {run_id} is running")
    if worker is not None:
        worker.announce_runs()
    found = await store.runs.get(run_id)
    assert found is not None
    return found


async def decide(
    store: Store,
    step_id: int,
    decision: str,
    *,
    by: str,
    reason: str | None = None,
    digest: str | None = None,
    worker: Worker | None = None,
) -> Step:
    """Approve (`decision="approved"`) or reject a step awaiting approval; its run resumes.

    An approval is given for `digest`, the `arguments_digest` the approver was shown (without
    one, for the arguments the step holds now), and only if the step's arguments still have
    it; the run then makes the call only with arguments of that digest. A rejection runs
    nothing, so it needs no digest.
    """
    if decision not in ("approved", "rejected"):
        raise ValueError(f"decision must be approved or rejected, not {decision!r}")
    step = await store.steps.get(step_id)
    if step is None:
        raise NotFound("step", step_id)
    if step.status != StepStatus.AWAITING_APPROVAL:
        raise _not_awaiting(step)
    approved = _approvable(step, digest) if decision == "approved" else None
    decided = await store.steps.decide(step_id, decision, by, reason, approved)
    if decided is None:  # decided by someone else meanwhile
        found = await store.steps.get(step_id)
        assert found is not None
        raise _not_awaiting(found)
    await store.runs.requeue(decided.run_id, reset_attempts=True)
    if worker is not None:
        worker.announce_runs()
    return decided


def _approvable(step: Step, digest: str | None) -> str:
    """The digest an approval of `step` binds to; raises NotWhatWasShown if `digest` (what the
    approver was shown) is not that of the step's arguments, or if they changed since the
    model proposed them."""
    current = call_digest(step.tool, step.arguments)
    if step.arguments_digest != current:
        raise NotWhatWasShown(
            step.id,
            f"step {step.id}: its arguments changed after the model proposed them (digest "
            f"{step.arguments_digest}, now {current}); it can be rejected, not approved",
        )
    if digest is not None and digest != current:
        raise NotWhatWasShown(
            step.id,
            f"step {step.id}: its arguments are not the arguments shown (digest {digest}; "
            f"theirs is {current}): look at them again before approving",
        )
    return current


def _not_awaiting(step: Step) -> IllegalState:
    return IllegalState(
        "step", step.id, f"step {step.id} is not awaiting approval (it is {step.status})"
    )


async def approve(
    store: Store,
    step_id: int,
    *,
    by: str,
    digest: str | None = None,
    worker: Worker | None = None,
) -> Step:
    return await decide(store, step_id, "approved", by=by, digest=digest, worker=worker)


async def reject(
    store: Store, step_id: int, *, by: str, reason: str | None, worker: Worker | None = None
) -> Step:
    return await decide(store, step_id, "rejected", by=by, reason=reason, worker=worker)


async def reload_rules(gateway: Gateway) -> RuleSet:
    """Re-read and swap the rules of a running gateway (`Gateway.reload_rules`): the admin
    API's and the dashboard's reload, and SIGHUP's. Raises `ConfigError` with every problem."""
    return await gateway.reload_rules()
