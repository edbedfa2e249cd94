"""The replay: selected live events copied into a separate eval store and run there by the
worker itself, every candidate rule in shadow mode. The live store is only read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import Any

from gateway.assistant.runner import AssistantRunner
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.evaluation.cost import estimate
from gateway.evaluation.expect import Failure, check
from gateway.evaluation.fixtures import Fixture, load_fixtures
from gateway.evaluation.offline import journaled_results, keep_listings, kept_catalogue
from gateway.evaluation.report import EvalReport, compare
from gateway.evaluation.selection import MAX_EVENTS, Selection, select_events
from gateway.evaluation.stored import keep
from gateway.mcp.catalogue import Catalogue
from gateway.retrying import RetryOverride
from gateway.rules.loader import RuleSet
from gateway.rules.model import Rule
from gateway.ruleset import load_ruleset
from gateway.runs.executor import ExecutorFactory
from gateway.store import Event, NewEvent, Run, Store
from gateway.store.status import FINISHED, EventStatus, RunStatus
from gateway.tools import TOOLS
from gateway.worker import Worker

# A replayed run has ended for the eval once it is finished, would wait for an operator (the
# eval records "would ask for approval" and never waits) or for a failing downstream.
SETTLED_RUNS = (*FINISHED, RunStatus.AWAITING_APPROVAL, RunStatus.WAITING)
# A replayed event is still to be routed while pending, or while its object is fetched.
UNSETTLED_EVENTS = (EventStatus.PENDING, EventStatus.FETCHING)


def candidate_rules(
    config: Config, rules_dir: Path, model: str | None = None, concurrency: int | None = None
) -> tuple[Config, RuleSet]:
    """The candidate rules, checked as `gateway check` would, every one in shadow mode, and
    with `model` (a profile of gateway.yaml) every assistant's model if given; the config
    the eval's worker runs them under (`concurrency` runs at once if given)."""
    if model is not None and model not in config.models:
        known = ", ".join(sorted(config.models)) or "none"
        raise ConfigError([f"--model {model}: no such model profile (profiles: {known})"])
    update: dict[str, object] = {"rules": str(rules_dir.resolve())}
    if concurrency is not None:
        update["worker"] = config.worker.model_copy(update={"concurrency": concurrency})
    candidate = config.model_copy(update=update)
    rules = load_ruleset(candidate)
    shadowed = [_shadowed(rule, model) for rule in rules.rules]
    return candidate, RuleSet(rules=shadowed, files=rules.files)


def _shadowed(rule: Rule, model: str | None) -> Rule:
    # One attempt: a replayed run that fails is reported failed, not retried after a backoff
    # (the rule's `retry:` is the last word on its policy).
    once = (rule.retry or RetryOverride()).model_copy(update={"max_attempts": 1})
    update: dict[str, object] = {"mode": "shadow", "retry": once}
    if model is not None and rule.assistant is not None:
        update["assistant"] = rule.assistant.model_copy(update={"model": model})
    return rule.model_copy(update=update)


async def evaluate(
    config: Config,
    live: Store,
    rules_dir: Path,
    eval_url: str,
    selection: Selection,
    *,
    model: str | None = None,
    concurrency: int | None = None,
    wait: float = 300.0,
    before_models: Callable[[float], None] = lambda estimate: None,
) -> EvalReport:
    """Replay the selected events with the rules of `rules_dir` into the store at `eval_url`
    (created if new) and compare, waiting at most `wait` seconds for the replayed runs to
    settle (a run still open then is reported as it stands). When the candidate has assistant
    rules, `before_models` is given the estimated cost (USD) before any model is called: it
    may raise to stop the eval there.

    Raises ConfigError if the candidate rules have problems.
    """
    candidate, rules = candidate_rules(config, rules_dir, model, concurrency)
    fixtures = load_fixtures(candidate, rules)
    events = await select_events(live, selection)
    live_runs = {event.id: await _runs(live, event.id) for event in events}
    if any(rule.assistant for rule in rules.rules):
        before_models(estimate(candidate, rules, chain.from_iterable(live_runs.values())))
    store = Store(eval_url)
    await store.open(migrate=True)
    try:
        await _cancel_earlier(store)
        if selection.offline:
            journal = await journaled_results(live, chain.from_iterable(live_runs.values()))
            tools = await kept_catalogue(store, TOOLS, candidate.mcp, journal)
        else:
            tools = Catalogue(TOOLS, candidate.mcp)
        news = [_copy(event) for event in events] + [fixture.event for fixture in fixtures]
        # Thin events route on the objects the live gateway fetched: an eval calls no API.
        fetched = {event.body: event.fetched for event in events if event.fetched is not None}
        copies = await _replay(store, candidate, rules, news, tools, wait, fetched)
        await keep_listings(store, tools)
        candidate_runs = {
            event.id: await _runs(store, copy) for event, copy in zip(events, copies, strict=False)
        }
        report = await compare(events, live, live_runs, store, candidate_runs, rules)
        fixture_copies = copies[len(events) :]
        for fixture, copy in zip(fixtures, fixture_copies, strict=True):
            report.add_fixture(fixture, await _fixture_failures(store, fixture, copy))
        await keep(store, candidate.rules, copies, report)
        return report
    finally:
        await store.close()


async def _replay(
    store: Store,
    config: Config,
    rules: RuleSet,
    events: list[NewEvent],
    tools: Catalogue,
    wait: float,
    fetched: dict[bytes, Any],
) -> list[int]:
    """The ids of `events` stored in the eval store, once the worker has settled every run
    they started (or `wait` seconds have passed)."""
    executors: dict[str, ExecutorFactory] = {}
    if any(rule.assistant for rule in rules.rules):
        executors["assistant"] = AssistantRunner.factory(config)
    worker = Worker(store, rules, config, executors=executors, tools=tools)
    worker.fetching.answer_from(fetched)
    store.events.on_commit(worker.notify_events)
    await worker.start()
    try:
        # A new key per replay: the same event can be evaluated again in the same store.
        tag = f"eval-{time.time_ns()}"
        copies = [
            (await store.events.add(replace(event, dedup_key=f"{tag}:{number}"))).id
            for number, event in enumerate(events)
        ]
        await _settled(store, copies, wait)
        return copies
    finally:
        await worker.stop()


def _copy(event: Event) -> NewEvent:
    return NewEvent(
        source=event.source,
        provider=event.provider,
        type=event.type,
        delivery_id=event.delivery_id,
        headers=event.headers,
        body=event.body,
        received_at=event.received_at,
    )


async def _cancel_earlier(store: Store) -> None:
    """Runs an earlier eval left open (still running at its timeout, waiting, awaiting an
    approval) are cancelled: this eval's worker must not carry them on."""
    open_runs = (
        RunStatus.PENDING,
        RunStatus.RUNNING,
        RunStatus.WAITING,
        RunStatus.AWAITING_APPROVAL,
    )
    for status in open_runs:
        for run in await store.runs.find(status=status, limit=MAX_EVENTS * 10):
            await store.runs.finish(run.id, RunStatus.CANCELLED, "left open by an earlier eval")


async def _settled(store: Store, event_ids: list[int], wait: float) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        events = await store.events.by_ids(event_ids)
        if all(event.status not in UNSETTLED_EVENTS for event in events):
            runs = [run for event_id in event_ids for run in await _runs(store, event_id)]
            if all(run.status in SETTLED_RUNS for run in runs):
                return
        await asyncio.sleep(0.05)


async def _runs(store: Store, event_id: int) -> list[Run]:
    return await store.runs.find(event_id=event_id, limit=100, oldest_first=True)


async def _fixture_failures(store: Store, fixture: Fixture, event_id: int) -> list[Failure]:
    """The failed checks of `fixture` on its rule's run for the fixture's event."""
    runs = [run for run in await _runs(store, event_id) if run.rule == fixture.rule]
    if not runs:
        detail = "the rule made no run for this event (`on` or `when` does not match)"
        return [Failure(event_id=0, rule=fixture.rule, check="run", detail=detail)]
    steps = await store.steps.of_run(runs[0].id)
    return check(0, fixture.rule, fixture.expect, runs[0], steps)
