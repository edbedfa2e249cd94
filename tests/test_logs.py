"""Logs are JSON lines with the ids that matter, and never carry a secret."""

from __future__ import annotations

import io
import json

import structlog

from gateway import log
from gateway.redaction import KNOWN_NAMES_MAX, Redactor


def test_secret_looking_and_configured_fields_are_redacted() -> None:
    out = io.StringIO()
    log.configure("info", redact_fields=["customer_email"], stream=out)
    structlog.contextvars.bind_contextvars(run_id=7, event_id=3)
    try:
        structlog.get_logger("test").info(
            "step.done", api_key="sk-live-123", customer_email="a@b.c", tool="jira.search"
        )
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()  # other tests log through structlog's defaults

    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["api_key"] == "[redacted]"
    assert line["customer_email"] == "[redacted]"
    assert (line["tool"], line["run_id"], line["event_id"]) == ("jira.search", 7, 3)
    assert "sk-live-123" not in json.dumps(line)


def test_values_json_cannot_hold_natively_are_still_written() -> None:
    out = io.StringIO()
    log.configure("info", stream=out)
    try:
        structlog.get_logger("test").info("odd", big=2**70, keys={1: "one"}, thing=object())
        structlog.get_logger("test").info("plain", keys={1: "one"}, name="ünïcode")
    finally:
        structlog.reset_defaults()

    odd, plain = (json.loads(line) for line in out.getvalue().strip().splitlines()[-2:])
    assert odd["big"] == 2**70 and odd["keys"] == {"1": "one"}
    assert odd["thing"].startswith("<object object")
    assert plain["keys"] == {"1": "one"} and plain["name"] == "ünïcode"


def test_a_redactor_past_its_kept_names_still_judges_every_name() -> None:
    redactor = Redactor()
    names = [f"field_{n}" for n in range(KNOWN_NAMES_MAX + 10)]

    assert not any(redactor.is_secret(name) for name in names)
    assert redactor.is_secret("X-Api-Key") and redactor.is_secret("X-Api-Key")
    assert len(redactor._known) <= KNOWN_NAMES_MAX
