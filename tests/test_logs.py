"""Logs are JSON lines with the ids that matter, and never carry a secret."""

from __future__ import annotations

import io
import json

import structlog

from gateway import log


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
