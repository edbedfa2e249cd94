"""`kill -9` of `gateway serve` while a run's container is being deleted, after the run's end:
the deletion reached OpenAI but was never journaled. The restarted gateway's sweep deletes it
again, hears it is gone, and journals that once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.assistant import teardown
from gateway.testing.fake_llm import ScriptedModel, answer, code
from tests.process import GatewayProcess, wait_until

pytestmark = pytest.mark.slow

RULES = """
- name: chart
  schedule: {cron: "0 8 * * MON", timezone: Europe/Paris}
  assistant:
    prompt: Chart last week.
    tools: [code_interpreter]
- name: later
  schedule: {cron: "0 9 * * MON", timezone: Europe/Paris}
  assistant:
    prompt: Anything else?
"""


def test_a_deletion_cut_short_by_kill_9_is_journaled_once_by_the_restarted_gateways_sweep(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    with ScriptedModel(code("print(1)"), answer("Nothing else.")) as model:
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / "chart.yaml").write_text(RULES)
        config = write_config(
            models={"default": {"api": "responses", "base_url": model.url, "model": "m"}}
        )
        model.containers.delete_hold = 3.0
        gateway = GatewayProcess(config).start()
        try:
            _cli(config, "fire", "chart")
            wait_until(lambda: bool(model.containers.delete_requests))
            gateway.kill()  # the run has ended; its DELETE is in flight, not journaled
            wait_until(lambda: bool(model.containers.deleted))  # OpenAI carried it out
            [run] = _runs(config)
            assert run["status"] == "succeeded"
            assert "code_interpreter.delete" not in _tools(config, run["id"])
            # The sweep takes runs that ended SWEEP_SETTLE ago (their own deletion is done):
            # the run's end moved back by that much, rather than waited for.
            _ended_earlier(tmp_path / "gateway.db", run["id"], teardown.SWEEP_SETTLE)
            model.containers.delete_hold = 0.0
            gateway = GatewayProcess(config).start()
            _cli(config, "fire", "later")  # runs go on beside the sweep made at start
            wait_until(lambda: "code_interpreter.delete" in _tools(config, run["id"]))
        finally:
            gateway.stop()

    model.assert_all_used()
    [container] = model.containers.containers
    assert model.containers.delete_requests == [container, container]
    assert model.containers.deleted == [container]
    [deleted] = [s for s in _steps(config, run["id"]) if s["tool"] == "code_interpreter.delete"]
    assert deleted["status"] == "succeeded"
    assert deleted["result"] == {"container_id": container, "outcome": "already gone"}


def _ended_earlier(database: Path, run_id: int, by: timedelta) -> None:
    with sqlite3.connect(database) as db:
        [(finished,)] = db.execute("SELECT finished_at FROM runs WHERE id = ?", (run_id,))
        earlier = datetime.fromisoformat(finished) - by - timedelta(seconds=1)
        db.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (str(earlier), run_id))


def _cli(config: Path, *arguments: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *arguments, "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _runs(config: Path) -> list[dict[str, Any]]:
    return list(json.loads(_cli(config, "runs", "--json")))


def _steps(config: Path, run_id: int) -> list[dict[str, Any]]:
    return list(json.loads(_cli(config, "run", str(run_id), "--json"))["steps"])


def _tools(config: Path, run_id: int) -> list[str]:
    return [str(s["tool"]) for s in _steps(config, run_id)]
