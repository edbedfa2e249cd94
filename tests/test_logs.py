"""Logs are JSON lines with the ids that matter, and never carry a secret."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import structlog

from gateway import log
from gateway.redaction import KNOWN_NAMES_MAX, Redactor

REPO = Path(__file__).resolve().parent.parent


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


def test_the_cli_console_log_prints_an_exception_plainly_without_rich_tracebacks() -> None:
    """`gateway` imports structlog without rich's traceback machinery (3.7 MB resident,
    gateway.plain_structlog): a console log still shows the whole traceback, as plain text."""
    script = """
import io, sys
import gateway.cli  # noqa: F401  (what the `gateway` program imports first)
import structlog
from gateway import log
out = io.StringIO()
log.configure("warning", json=False, stream=out)
try:
    1 / 0
except ZeroDivisionError:
    structlog.get_logger("test").exception("command.failed")
assert "rich.traceback" not in sys.modules
print(out.getvalue())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "command.failed" in done.stdout
    assert "Traceback (most recent call last):" in done.stdout
    assert "ZeroDivisionError: division by zero" in done.stdout


INTERLEAVED = """
import os, sys
from gateway import log
import structlog

log.configure("info")  # to stderr, a pipe here as under systemd or a container runtime
children = []
for n in range(3):
    pid = os.fork()
    if pid == 0:
        logger = structlog.get_logger("test")
        for i in range(2000):
            logger.info("run.ended", process=n, i=i, status="succeeded")
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
"""


def test_processes_sharing_stderr_never_split_each_others_lines() -> None:
    """`gateway serve --processes N` writes every process's log to one stderr: each line must
    reach it in one write, or two processes' lines interleave into invalid JSON."""
    done = subprocess.run(
        [sys.executable, "-c", INTERLEAVED], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    broken = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            broken.append(line)
    assert broken == []
    assert len(lines) == 6000
