"""Container sessions count against daily budgets like model turns, on either store: a rule
whose code interpreter spent its `cost_per_day` makes no model request on its next run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway import cli
from gateway.assistant.models import CONTAINER_PRICES
from gateway.testing.fake_llm import ScriptedModel, code
from tests.live import live_gateway
from tests.postgres import fresh_database_sync

# The model is unpriced (costs 0): what the rule spends is its container session alone.
RULE = """
- name: charts
  schedule: {cron: "0 8 * * MON"}
  budget: {cost_per_day: 1.50}
  assistant:
    prompt: Chart last week.
    tools: [{code_interpreter: {memory: 64g}}]
"""


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as scripted:
        yield scripted


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_container_session_spends_the_rule_budget_and_stops_its_next_run(
    tmp_path: Path, model: ScriptedModel, backend: str
) -> None:
    model.script(code("plot()", files={"chart.png": b"\x89PNG\r\n\x1a\n"}))
    profile = {"api": "responses", "base_url": model.url, "model": "scripted-model"}
    database = fresh_database_sync() if backend == "postgresql" else nullcontext(None)
    with database as url:
        store = {"store": url} if url else {}
        with live_gateway(tmp_path, RULE, models={"default": profile}, **store) as gw:
            for count in (1, 2):
                fired = CliRunner().invoke(
                    cli.app, ["fire", "charts", "--config", str(tmp_path / "gateway.yaml")]
                )
                assert fired.exit_code == 0, fired.output
                runs = gw.finished_runs(count)
            first, second = runs

    model.assert_all_used()
    assert first.status == "succeeded" and first.cost == pytest.approx(CONTAINER_PRICES["64g"])
    assert second.status == "failed"
    assert second.error.startswith(
        f"budget reached: rule charts budget, cost {CONTAINER_PRICES['64g']:.4f} of 1.5 USD today"
    )
    assert len(model.requests) == 1  # the second run asked the model nothing
