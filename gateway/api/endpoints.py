"""The admin API's endpoints: one function per operation, validated input in, a model out.

Each handler gets the gateway (`Admin`: store, rules, worker, config) and what the route table
(`gateway.api.routes`) parsed for it: `id`, `query`, `body`. Errors map to status codes in
`gateway.api` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gateway import operations
from gateway.api.detail import event_detail, redactor_for, run_detail
from gateway.api.dryrun import raw_event, try_rules
from gateway.api.inputs import (
    Approval,
    DeadQuery,
    Decision,
    EventQuery,
    ReconciliationQuery,
    RuleTest,
    RunQuery,
    ScheduleQuery,
    StoredEvent,
)
from gateway.api.models import (
    Event,
    EventDetail,
    EventPage,
    Reconciliation,
    ReconciliationList,
    Reloaded,
    Replayed,
    Rule,
    RuleList,
    RuleTestResult,
    Run,
    RunDetail,
    RunList,
    ScheduledRule,
    ScheduleList,
    Step,
)
from gateway.api.params import MAX_ID
from gateway.config import Config
from gateway.rules.loader import RuleSet
from gateway.runtime import Gateway
from gateway.store import Store
from gateway.store.status import RunStatus
from gateway.worker import Worker


@dataclass
class Admin:
    """The parts of a running gateway an operator reaches: those of its runtime."""

    gateway: Gateway

    @property
    def store(self) -> Store:
        return self.gateway.store

    @property
    def rules(self) -> RuleSet:
        return self.gateway.rules

    @property
    def worker(self) -> Worker | None:
        return self.gateway.worker

    @property
    def config(self) -> Config:
        return self.gateway.config


async def list_events(admin: Admin, query: EventQuery) -> EventPage:
    found = await admin.store.events.find(
        source=query.source,
        type=query.type,
        status=query.status,
        since=query.since,
        until=query.until,
        before=query.before,
        limit=query.limit,
    )
    items = [Event.of(e) for e in found]
    more = len(items) == query.limit and items
    return EventPage(items=items, next_before=items[-1].id if more else None)


async def get_event(admin: Admin, id: int) -> EventDetail:
    event = await admin.store.events.get(id)
    if event is None:
        raise operations.NotFound("event", id)
    return await event_detail(admin.store, event, redactor_for(admin.config))


async def replay_event(admin: Admin, id: int) -> Replayed:
    replayed = await operations.replay(admin.store, admin.rules, id, admin.worker)
    return Replayed(event_id=replayed.event_id, runs=replayed.run_ids, fetching=replayed.fetching)


async def list_runs(admin: Admin, query: RunQuery) -> RunList:
    found = await admin.store.runs.find(
        status=query.status, rule=query.rule, event_id=query.event, limit=query.limit
    )
    return RunList(items=[Run.of(r) for r in found])


async def get_run(admin: Admin, id: int) -> RunDetail:
    run = await admin.store.runs.get(id)
    if run is None:
        raise operations.NotFound("run", id)
    return await run_detail(admin.store, run, redactor_for(admin.config))


async def retry_run(admin: Admin, id: int) -> Run:
    return Run.of(await operations.retry(admin.store, id, admin.worker))


async def approve_step(admin: Admin, id: int, body: Approval) -> Step:
    step = await operations.approve(
        admin.store, id, by=body.by, digest=body.digest, worker=admin.worker
    )
    return Step.of(step)


async def reject_step(admin: Admin, id: int, body: Decision) -> Step:
    step = await operations.reject(
        admin.store, id, by=body.by, reason=body.reason, worker=admin.worker
    )
    return Step.of(step)


async def list_schedules(admin: Admin, query: ScheduleQuery) -> ScheduleList:
    from gateway.scheduler import list_schedules as schedules

    found = await schedules(admin.store, admin.rules.rules, datetime.now(UTC), count=query.count)
    return ScheduleList(items=[ScheduledRule.model_validate(s) for s in found])


async def list_reconciliations(admin: Admin, query: ReconciliationQuery) -> ReconciliationList:
    found = await admin.store.reconciliations.recent(query.source, query.limit)
    return ReconciliationList(items=[Reconciliation.of(r) for r in found])


async def list_dead(admin: Admin, query: DeadQuery) -> RunList:
    found = await admin.store.runs.find(status=RunStatus.DEAD, limit=query.limit)
    return RunList(items=[Run.of(r) for r in found])


def rules_of(rules: RuleSet) -> list[Rule]:
    return [Rule.of(rule, rules.files.get(rule.name)) for rule in rules.rules]


async def list_rules(admin: Admin) -> RuleList:
    return RuleList(directory=str(admin.config.rules_dir), items=rules_of(admin.rules))


async def reload_rules(admin: Admin) -> Reloaded:
    rules = await operations.reload_rules(admin.gateway)
    return Reloaded(reloaded=True, directory=str(admin.config.rules_dir), items=rules_of(rules))


async def test_rules(admin: Admin, body: RuleTest) -> RuleTestResult:
    """Which rules the event matches and what they would do (the dashboard's tester too)."""
    target = body.target
    if isinstance(target, StoredEvent):
        event_id = target.event_id
        event = await admin.store.events.get(event_id) if 0 < event_id <= MAX_ID else None
        if event is None:
            raise operations.NotFound("event", event_id)
    else:
        event = raw_event(admin.config, target.source, target.type, target.payload, target.headers)
    return try_rules(admin.rules, event)
