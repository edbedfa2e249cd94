"""Events, runs and steps in detail for operators, with secrets redacted.

Headers that look like credentials and payload fields named sensitive are replaced by
`[redacted]`; the API and the dashboard both show these shapes and nothing rawer.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from gateway.api.models import EventDetail, EventTimeline, Fetch, Run, RunDetail, StepDetail
from gateway.assistant.container import shown
from gateway.config import Config
from gateway.nesting import READABLE_DEPTH, deeper_than
from gateway.redaction import Redactor
from gateway.store import Event, Store, records


def redactor_for(config: Config) -> Redactor:
    """The redactor for a config: the built-in policy plus its `redact_fields`."""
    return Redactor(config.redact_fields)


def body_view(body: bytes, redactor: Redactor) -> dict[str, Any]:
    """The stored body as text (UTF-8) or base64, and its parsed JSON, both redacted."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {
            "body": base64.b64encode(body).decode("ascii"),
            "body_encoding": "base64",
            "body_redacted": False,
            "payload": None,
        }
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"body": text, "body_encoding": "utf-8", "body_redacted": False, "payload": None}
    if deeper_than(payload, READABLE_DEPTH):
        # Stored before max_json_depth existed: too deep to redact safely, so not shown at all
        # (the raw text could hold a secret the redactor never reached).
        withheld = f"[withheld: the body nests deeper than {READABLE_DEPTH} levels]"
        return {"body": withheld, "body_encoding": "utf-8", "body_redacted": True, "payload": None}
    clean = redactor.value(payload)
    redacted = clean != payload
    if redacted:
        text = orjson.dumps(clean, option=orjson.OPT_INDENT_2).decode("utf-8")
    return {"body": text, "body_encoding": "utf-8", "body_redacted": redacted, "payload": clean}


def step_detail(step: records.Step, redactor: Redactor) -> StepDetail:
    """A step for operators. A call awaiting approval shows its arguments exactly, with their
    digest: the approver must see what will run, and a model could hide anything in a field
    named like a secret."""
    awaiting = step.status == "awaiting_approval"
    return StepDetail.of(
        step,
        arguments=step.arguments if awaiting else redactor.value(step.arguments),
        result=redactor.value(shown(step.result)),
    )


async def run_detail(store: Store, run: records.Run, redactor: Redactor) -> RunDetail:
    steps = await store.steps.of_run(run.id)
    return RunDetail.of(run, steps=[step_detail(s, redactor) for s in steps])


async def _runs(store: Store, event: Event) -> list[records.Run]:
    return sorted(await store.runs.find(event_id=event.id, limit=1000), key=lambda r: r.id)


async def event_detail(store: Store, event: Event, redactor: Redactor) -> EventDetail:
    """An event with its redacted headers and body, and its runs."""
    runs = [Run.of(r) for r in await _runs(store, event)]
    return EventDetail.of(event, **await _raw(store, event, redactor), runs=runs)


async def event_timeline(store: Store, event: Event, redactor: Redactor) -> EventTimeline:
    """The same, each run with its steps: the dashboard's event page."""
    runs = [await run_detail(store, r, redactor) for r in await _runs(store, event)]
    return EventTimeline.of(event, **await _raw(store, event, redactor), runs=runs)


async def _raw(store: Store, event: Event, redactor: Redactor) -> dict[str, Any]:
    fetch = await store.fetches.get(event.id)
    return {
        "headers": redactor.headers(event.headers),
        **body_view(event.body, redactor),
        "fetched": redactor.value(event.fetched),
        "fetch": Fetch.from_record(fetch) if fetch is not None else None,
    }
