"""Planning is one decision: the worker stores the runs the dry run reports, for every rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.api.dryrun import try_rules
from gateway.config import Config
from gateway.nesting import READABLE_DEPTH
from gateway.rules import templates
from gateway.rules.loader import RuleSet
from gateway.rules.loader import load as load_rules
from gateway.rules.model import Rule
from gateway.rules.plan import plan
from gateway.rules.scope import scope_for
from gateway.scheduler import schedule_event
from gateway.store import Event, NewEvent, Store
from gateway.worker import Worker
from tests.fixtures import Fixture, all_fixtures, load, requires_fixtures
from tests.test_providers import lowered, provider_for

SHIPPED = Path(__file__).resolve().parent.parent / "rules"
FIRED = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
# Stripe's dispute has no fixture: the shipped rule that uses `order_by` gets this one.
DISPUTE = {
    "id": "evt_1",
    "type": "charge.dispute.created",
    "data": {"object": {"id": "dp_1", "charge": "ch_42", "amount": 5000, "currency": "eur"}},
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def shipped() -> RuleSet:
    return load_rules(SHIPPED)


def event_of(fixture: Fixture) -> NewEvent:
    provider = provider_for(fixture.source)
    headers = lowered(fixture.headers)
    return NewEvent(
        source=fixture.source,
        provider=provider.name,
        type=provider.event_type(headers, orjson.loads(fixture.body)),
        delivery_id=fixture.id,
        headers=headers,
        body=fixture.body,
        received_at=FIRED,
    )


def fired(rule: Rule) -> NewEvent:
    return schedule_event(rule, FIRED, FIRED, manual=False)


def dispute() -> NewEvent:
    body = orjson.dumps(DISPUTE)
    return NewEvent("stripe", "stripe", "charge.dispute.created", "evt_1", {}, body, FIRED)


def failed_pipeline() -> NewEvent:
    """The GitLab fixture (a pipeline that passed) as the pipeline that failed."""
    passed = event_of(load("gitlab", "pipeline_hook"))
    payload = orjson.loads(passed.body)
    payload["object_attributes"]["status"] = "failed"
    return replace(passed, delivery_id="failed", body=orjson.dumps(payload))


def events() -> list[Any]:
    """Every fixture, every scheduled rule fired, a dispute and a failed pipeline."""
    cases: list[Any] = [pytest.param(event_of, f, id=f.id) for f in all_fixtures()]
    cases += [
        pytest.param(fired, rule, id=f"schedule/{rule.name}")
        for rule in shipped().rules
        if rule.schedule
    ]
    return [
        *cases,
        pytest.param(lambda _: dispute(), None, id="stripe/dispute"),
        pytest.param(lambda _: failed_pipeline(), None, id="gitlab/pipeline_failed"),
    ]


async def worker_and_dry_run(store: Store, rules: RuleSet, new: NewEvent) -> tuple[Any, Any]:
    """What the worker stores for `new` and what the dry run reports, side by side."""
    stored = await store.events.add(new)
    event = await store.events.get(stored.id)
    assert event is not None
    await Worker(store, rules, Config()).route(event)
    runs = await store.runs.find(event_id=event.id, oldest_first=True)
    worker = sorted((r.rule, r.ordering_key, r.error) for r in runs)
    report = try_rules(rules, event)
    dry_run = sorted(
        (r.rule, getattr(r, "ordering_key", None), r.error) for r in report.rules if r.matched
    )
    return worker, dry_run


async def test_dry_run_reports_the_ordering_key_the_worker_stores(store: Store) -> None:
    rules = shipped()
    worker, dry_run = await worker_and_dry_run(store, rules, dispute())

    assert ("stripe-dispute-ticket", "stripe-dispute-ticket:ch_42", None) in worker
    assert dry_run == worker


@requires_fixtures
@pytest.mark.parametrize(("make", "source"), events())
async def test_worker_and_dry_run_agree_on_every_shipped_rule(
    store: Store, make: Any, source: Any
) -> None:
    rules = shipped()
    worker, dry_run = await worker_and_dry_run(store, rules, make(source))

    assert worker != [], "every case matches at least one shipped rule"
    assert dry_run == worker


@requires_fixtures
def test_every_enabled_shipped_rule_plans_a_run_in_one_of_the_cases() -> None:
    rules = shipped()
    planned = set()
    for case in events():
        make, source = case.values
        new = make(source)
        shared = ("source", "provider", "type", "delivery_id", "headers", "body", "received_at")
        event = Event(id=1, status="pending", **{name: getattr(new, name) for name in shared})
        planned |= {run.rule for run in plan(rules, event)}

    assert planned == {rule.name for rule in rules.rules if rule.enabled}


def rules_from(tmp_path: Path, text: str) -> RuleSet:
    (tmp_path / "rules.yaml").write_text(text)
    return load_rules(tmp_path)


def event_with(body: bytes) -> Event:
    return Event(1, "bench", "generic", "order.created", "d-1", FIRED, {}, body, "pending")


def test_a_rule_without_templates_plans_its_run_without_parsing_the_body(tmp_path: Path) -> None:
    rules = rules_from(
        tmp_path,
        "- name: plain\n  on: {source: bench, event: '*'}\n"
        "  actions: [{log.record: {message: '{{ payload }}'}}]\n"
        "- name: keyed\n  on: {source: bench, event: '*'}\n  order_by: '{{ payload.id }}'\n"
        "  actions: [{log.record: {message: x}}]\n",
    )
    plain = RuleSet([rules.by_name["plain"]])
    # Not JSON at all: a rule that reads no template when planning still gets its run.
    broken = event_with(b"{not json")

    assert [run.rule for run in plan(plain, broken)] == ["plain"]
    # And planning with the scope skipped agrees with planning from the full scope.
    good = event_with(b'{"id": 7}')
    assert plan(rules, good) == plan(rules, good, scope_for(good))
    assert [run.ordering_key for run in plan(rules, good)] == [None, "keyed:7"]


def test_a_body_nested_past_the_readable_depth_reaches_templates_as_text() -> None:
    deep = b"[" * (READABLE_DEPTH + 1) + b"]" * (READABLE_DEPTH + 1)
    # Many brackets, little depth: the bracket count does not settle it, the walk does.
    wide = orjson.dumps([{"n": n} for n in range(READABLE_DEPTH * 2)])

    assert scope_for(event_with(deep))["payload"] == deep.decode()
    assert scope_for(event_with(wide))["payload"] == orjson.loads(wide)
    assert scope_for(event_with(b'{"a": [1]}'))["payload"] == {"a": [1]}


def test_templates_read_only_the_names_they_spell() -> None:
    arguments = {"summary": "{{ event.type }}", "labels": ["x", "{{ payload.id | tojson }}"]}

    assert templates.reads(arguments, "payload")
    assert not templates.reads({"summary": "{{ event.type }}", "n": 3}, "payload")
    # A name the template sets itself is not read from the scope.
    assert not templates.reads("{% set payload = 1 %}{{ payload }}", "payload")
    # A template that does not compile may read anything: the safe answer.
    assert templates.reads("{{ payload", "results")
    assert not templates.reads(None, "payload")
