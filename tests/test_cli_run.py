"""`gateway run RUN`: every step's arguments, result or error, tokens, cost and model, whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway import cli
from gateway.testing.fake_llm import ScriptedModel, answer, call
from tests.fixtures import requires_fixtures
from tests.live import APPROVED_TRIAGE, LiveGateway, live_gateway, priced_models

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]

# Longer than any terminal line: it must come out whole, not cut at 80 columns.
LABEL = "a label long enough to be cut by a table that fits eighty columns, " * 2


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[LiveGateway, ScriptedModel]]:
    with (
        ScriptedModel() as model,
        live_gateway(tmp_path, APPROVED_TRIAGE, models=priced_models(model.url)) as gw,
    ):
        yield gw, model


def shown(tmp_path: Path, *args: str) -> str:
    result = CliRunner().invoke(cli.app, ["run", *args, "-c", str(tmp_path / "gateway.yaml")])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_waiting_call_shows_its_exact_arguments_and_how_to_approve_them(
    gateway: tuple[LiveGateway, ScriptedModel], tmp_path: Path
) -> None:
    gw, model = gateway
    model.script(call("test__record", {"label": LABEL, "delay_ms": 0, "order": 7}, usage=(120, 30)))
    gw.post_order("e1", name="#1")
    [run] = gw.wait_for(lambda: gw.runs(status="awaiting_approval"))
    [waiting] = [s for s in gw.steps(run.id) if s.status == "awaiting_approval"]

    output = shown(tmp_path, str(run.id))

    assert f"run {run.id} (triage, assistant) on event 1: awaiting_approval" in output
    assert "model turn (scripted-model) · succeeded" in output
    assert "  proposes test.record:" in output
    assert "tokens 120 in / 30 out · cost $0.000036" in output
    assert "arguments (exact, awaiting approval):" in output
    assert f'      "label": {json.dumps(LABEL)},' in output.splitlines()
    assert f"approve: gateway approve {waiting.id} --digest {waiting.arguments_digest}" in output


def test_results_are_shown_whole_and_json_stays_complete(
    gateway: tuple[LiveGateway, ScriptedModel], tmp_path: Path
) -> None:
    gw, model = gateway
    model.script(
        call("test__record", {"label": LABEL, "delay_ms": 0, "order": 7}, usage=(120, 30)),
        answer("Recorded.", usage=(10, 2)),
    )
    gw.post_order("e1", name="#1")
    [run] = gw.wait_for(lambda: gw.runs(status="awaiting_approval"))
    [waiting] = [s for s in gw.steps(run.id) if s.status == "awaiting_approval"]
    approved = CliRunner().invoke(
        cli.app,
        ["approve", str(waiting.id), "--digest", str(waiting.arguments_digest), "-c",
         str(tmp_path / "gateway.yaml")],
    )  # fmt: skip
    assert approved.exit_code == 0, approved.output
    gw.finished_runs(1)

    output = shown(tmp_path, str(run.id))
    detail = json.loads(shown(tmp_path, str(run.id), "--json"))

    made = next(s for s in detail["steps"] if s["kind"] == "tool")
    assert made["result"] == {"label": LABEL, "order": 7}
    for line in json.dumps(made["result"], indent=2).splitlines():
        assert f"    {line}" in output.splitlines()
    assert "  approved by cli" in output
    assert "  says:\n    Recorded.\n" in output
