"""The JSON shapes of events, runs and steps for operators, with secrets redacted.

Headers that look like credentials and payload fields named sensitive are replaced by
`[redacted]`; the API and the dashboard both show these shapes and nothing rawer.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from gateway.config import Config
from gateway.nesting import READABLE_DEPTH, deeper_than
from gateway.redaction import Redactor
from gateway.store import Event, Run, Step, Store
from gateway.store.status import StepStatus


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


def step_view(step: Step, redactor: Redactor) -> dict[str, Any]:
    """A step for operators. A call awaiting approval shows its arguments exactly, with their
    digest: the approver must see what will run, and a model could hide anything in a field
    named like a secret."""
    summary = step.summary()
    if step.status != StepStatus.AWAITING_APPROVAL:
        summary["arguments"] = redactor.value(summary["arguments"])
    summary["result"] = redactor.value(summary["result"])
    summary["finished_at"] = step.finished_at.isoformat() if step.finished_at else None
    return summary


async def run_detail(store: Store, run: Run, redactor: Redactor) -> dict[str, Any]:
    steps = await store.steps.of_run(run.id)
    return {**run.summary(), "steps": [step_view(s, redactor) for s in steps]}


async def event_detail(
    store: Store, event: Event, redactor: Redactor, *, with_steps: bool = False
) -> dict[str, Any]:
    """An event with its redacted headers and body, and its runs (with steps if asked)."""
    runs = sorted(await store.runs.find(event_id=event.id, limit=1000), key=lambda r: r.id)
    detail: dict[str, Any] = {
        **event.summary(),
        "headers": redactor.headers(event.headers),
        **body_view(event.body, redactor),
    }
    if with_steps:
        detail["runs"] = [await run_detail(store, r, redactor) for r in runs]
    else:
        detail["runs"] = [r.summary() for r in runs]
    return detail
