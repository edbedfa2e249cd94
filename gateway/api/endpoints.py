"""The admin API's endpoints: JSON in and out, one function per operation.

Each handler gets the gateway (`Admin`: store, rules, worker, config) and the request; errors
map to status codes in `gateway.api` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from gateway import operations
from gateway.api import params
from gateway.api.detail import event_detail, redactor_for, run_detail
from gateway.api.dryrun import raw_event, try_rules
from gateway.config import Config
from gateway.rules.loader import RuleSet
from gateway.rules.model import Rule
from gateway.store import Store
from gateway.store.status import RunStatus
from gateway.worker import Worker

# The form of a step's arguments_digest (records.call_digest): SHA-256 in hex.
DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass
class Admin:
    """The parts of a running gateway an operator reaches, read from the app's state."""

    state: Any

    @property
    def store(self) -> Store:
        store: Store = self.state.store
        return store

    @property
    def rules(self) -> RuleSet:
        rules: RuleSet = self.state.rules
        return rules

    @property
    def worker(self) -> Worker | None:
        worker: Worker | None = getattr(self.state, "worker", None)
        return worker

    @property
    def config(self) -> Config:
        config: Config = self.state.config
        return config


async def list_events(admin: Admin, request: Request) -> Any:
    limit = params.integer(request, "limit", default=50, high=params.MAX_LIMIT)
    found = await admin.store.events.find(
        source=params.text(request, "source"),
        type=params.text(request, "type"),
        status=params.text(request, "status"),
        since=params.timestamp(request, "since"),
        until=params.timestamp(request, "until"),
        before=params.integer(request, "before", default=None),
        limit=limit or 50,
    )
    items = [e.summary() for e in found]
    more = len(items) == limit and items
    return {"items": items, "next_before": items[-1]["id"] if more else None}


async def get_event(admin: Admin, request: Request) -> Any:
    event_id = params.record_id(request)
    event = await admin.store.events.get(event_id)
    if event is None:
        raise operations.NotFound("event", event_id)
    return await event_detail(admin.store, event, redactor_for(admin.config))


async def replay_event(admin: Admin, request: Request) -> Any:
    replayed = await operations.replay(
        admin.store, admin.rules, params.record_id(request), admin.worker
    )
    return {"event_id": replayed.event_id, "runs": replayed.run_ids}


async def list_runs(admin: Admin, request: Request) -> Any:
    found = await admin.store.runs.find(
        status=params.text(request, "status"),
        rule=params.text(request, "rule"),
        event_id=params.integer(request, "event", default=None),
        limit=params.integer(request, "limit", default=50, high=params.MAX_LIMIT) or 50,
    )
    return {"items": [r.summary() for r in found]}


async def get_run(admin: Admin, request: Request) -> Any:
    run_id = params.record_id(request)
    run = await admin.store.runs.get(run_id)
    if run is None:
        raise operations.NotFound("run", run_id)
    return await run_detail(admin.store, run, redactor_for(admin.config))


async def retry_run(admin: Admin, request: Request) -> Any:
    run = await operations.retry(admin.store, params.record_id(request), admin.worker)
    return run.summary()


async def approve_step(admin: Admin, request: Request) -> Any:
    step_id = params.record_id(request)
    body = await params.json_body(request, required=False)
    by = _by(body, "api")
    digest = body.get("digest")
    if digest is not None and not (isinstance(digest, str) and DIGEST.fullmatch(digest)):
        raise params.InvalidInput(["digest: the step's arguments_digest, 64 hex digits"])
    step = await operations.approve(admin.store, step_id, by=by, digest=digest, worker=admin.worker)
    return step.summary()


async def reject_step(admin: Admin, request: Request) -> Any:
    step_id = params.record_id(request)
    body = await params.json_body(request, required=False)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise params.InvalidInput(["reason: must be a string"])
    step = await operations.reject(
        admin.store, step_id, by=_by(body, "api"), reason=reason, worker=admin.worker
    )
    return step.summary()


def _by(body: dict[str, Any], default: str) -> str:
    by = body.get("by", default)
    if not isinstance(by, str) or not by or len(by) > 200:
        raise params.InvalidInput(["by: a non-empty string of at most 200 characters"])
    return by


async def list_schedules(admin: Admin, request: Request) -> Any:
    from gateway.scheduler import list_schedules as schedules

    count = params.integer(request, "count", default=5, high=50) or 5
    return {
        "items": await schedules(admin.store, admin.rules.rules, datetime.now(UTC), count=count)
    }


async def list_dead(admin: Admin, request: Request) -> Any:
    limit = params.integer(request, "limit", default=50, high=params.MAX_LIMIT) or 50
    found = await admin.store.runs.find(status=RunStatus.DEAD, limit=limit)
    return {"items": [r.summary() for r in found]}


def rule_summary(rule: Rule, rules: RuleSet) -> dict[str, Any]:
    file = rules.files.get(rule.name)
    return {
        "name": rule.name,
        "description": rule.description,
        "kind": rule.kind,
        "mode": rule.mode,
        "enabled": rule.enabled,
        "file": str(file) if file else None,
        "on": rule.trigger.model_dump() if rule.trigger else None,
        "schedule": rule.schedule.model_dump() if rule.schedule else None,
        "when": rule.when,
        "order_by": rule.order_by,
        "actions": [a.tool for a in rule.actions],
        "assistant": (
            {"model": rule.assistant.model, "tools": list(rule.assistant.tools)}
            if rule.assistant
            else None
        ),
    }


async def list_rules(admin: Admin, request: Request) -> Any:
    rules = admin.rules
    return {
        "directory": str(admin.config.rules_dir),
        "items": [rule_summary(r, rules) for r in rules.rules],
    }


async def reload_rules(admin: Admin, request: Request) -> Any:
    rules = await operations.reload_rules(admin.state)
    return {
        "reloaded": True,
        "directory": str(admin.config.rules_dir),
        "items": [rule_summary(r, rules) for r in rules.rules],
    }


async def test_rules(admin: Admin, request: Request) -> Any:
    body = await params.json_body(request)
    return await dry_run(admin, body)


async def dry_run(admin: Admin, body: dict[str, Any]) -> dict[str, Any]:
    """`{"event_id": N}` or `{"source", "type", "payload", "headers"}` (also nested under
    `"event"`): which rules match and what they would do."""
    if isinstance(body.get("event"), dict):
        body = body["event"]
    if body.get("event_id") is not None:
        event_id = body["event_id"]
        if isinstance(event_id, bool) or not isinstance(event_id, int):
            raise params.InvalidInput(["event_id: must be an integer"])
        event = await admin.store.events.get(event_id) if 0 < event_id <= params.MAX_ID else None
        if event is None:
            raise operations.NotFound("event", event_id)
    else:
        problems = [
            f"{key}: a non-empty string is required (or give event_id)"
            for key in ("source", "type")
            if not isinstance(body.get(key), str) or not body[key]
        ]
        headers = body.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            problems.append("headers: an object of strings")
        if problems:
            raise params.InvalidInput(problems)
        event = raw_event(admin.config, body["source"], body["type"], body.get("payload"), headers)
    return try_rules(admin.rules, event)
