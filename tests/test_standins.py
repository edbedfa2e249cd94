"""The stand-ins of docs/assistants.md and the README's walk-through: a model that needs no
key and a Jira, each started as the docs say and used through the gateway."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import jira
import openai
import pytest

from gateway.testing.server import serve_in_thread
from gateway.testing.standins import DemoModel
from tests.fixtures import requires_fixtures
from tests.live import live_gateway
from tests.process import free_port

REPO = Path(__file__).resolve().parents[1]


def worked_rule() -> str:
    """The `rules/demo.yaml` of docs/assistants.md, as written there."""
    text = (REPO / "docs" / "assistants.md").read_text()
    start = text.index("- name: order-assistant-demo")
    return text[start : text.index("```", start)]


@requires_fixtures
def test_the_worked_rule_runs_on_the_demo_model_again_and_again(tmp_path: Path) -> None:
    with serve_in_thread(DemoModel().app) as base:
        models = {"demo": {"api": "chat", "base_url": f"{base}/v1", "model": "demo"}}
        with live_gateway(tmp_path, worked_rule(), models=models) as gw:
            gw.post_order("e1", name="#1")
            gw.post_order("e2", name="#2")
            runs = gw.finished_runs(2)
            steps = gw.steps(runs[0].id)

    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert [(s.kind, s.tool) for s in steps if s.kind == "tool"] == [("tool", "log.record")]
    assert steps[-1].result["text"] == "Done: I logged the event."


@pytest.fixture
def standin(request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.testing.standins", request.param, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        print(process.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx2.get(url, timeout=1)
                break
            except httpx2.HTTPError:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("standin", ["model"], indirect=True)
def test_the_model_standin_answers_the_openai_client_without_a_key(standin: str) -> None:
    client = openai.OpenAI(base_url=f"{standin}/v1", api_key="not-needed")
    tools = [{"type": "function", "function": {"name": "log__record", "parameters": {}}}]
    messages: list[dict[str, str]] = [{"role": "user", "content": "hello"}]

    first = client.chat.completions.create(model="demo", messages=messages, tools=tools)  # type: ignore[arg-type]
    [proposed] = first.choices[0].message.tool_calls or []

    assert proposed.function.name == "log__record"  # type: ignore[union-attr]


@pytest.mark.parametrize("standin", ["jira"], indirect=True)
def test_the_jira_standin_takes_the_ci_rules_issue(standin: str) -> None:
    client = jira.JIRA(server=standin, basic_auth=("gateway@example.com", "x"))

    fields = {"project": {"key": "OPS"}, "summary": "CI failed", "issuetype": {"name": "Bug"}}
    issue = client.create_issue(fields=fields)

    assert issue.key == "OPS-1"
