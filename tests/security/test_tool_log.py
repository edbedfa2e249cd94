"""`log.record` keeps the fields a rule or a model passes in their own namespace.

Each test runs the tool in a child process whose structured log goes to stdout as JSON, as the
gateway configures it, so the line checked is the line an operator would read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

# A field named like one of the log line's own keys (or the log call's own keywords).
OWN_KEYS = ["event", "message", "run_id", "level", "timestamp"]

SCRIPT = """
import asyncio, json, sys
from gateway import log
from gateway.tools import Toolbox

log.configure("info", stream=sys.stdout)
arguments = json.loads(sys.argv[1])
result = asyncio.run(Toolbox().call("log.record", arguments, key="k", run_id=42))
print(json.dumps({"result": result}))
"""


def record(arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run log.record in a child process: (the log line, the tool's result)."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(arguments)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    [logged] = [line for line in lines if line.get("event") == "rule.log"]
    return logged, lines[-1]["result"]


@pytest.mark.parametrize("name", OWN_KEYS)
def test_a_field_named_like_a_log_key_is_logged_under_fields(name: str) -> None:
    logged, result = record({"message": "hello", "fields": {name: "from the payload"}})

    assert result == {"logged": "hello"}
    assert logged["fields"] == {name: "from the payload"}
    assert (logged["event"], logged["message"], logged["run_id"]) == ("rule.log", "hello", 42)
    assert logged["level"] == "info"
    assert logged["timestamp"] != "from the payload"


def test_every_log_key_at_once_leaves_the_line_its_own_keys() -> None:
    fields = {name: f"user {name}" for name in OWN_KEYS}

    logged, _ = record({"message": "hello", "fields": fields})

    assert logged["fields"] == fields
    assert {k: logged[k] for k in ("event", "message", "run_id", "level")} == {
        "event": "rule.log",
        "message": "hello",
        "run_id": 42,
        "level": "info",
    }


def test_secret_looking_fields_are_still_redacted() -> None:
    logged, _ = record({"message": "hello", "fields": {"api_token": "sk-live-1", "order": "7"}})

    assert logged["fields"] == {"api_token": "[redacted]", "order": "7"}
