"""`gateway eval --offline` with MCP tools: read-only ones answer with what the live run
journaled, tools with side effects are recorded, and no request reaches the MCP server (it
is stopped: any request would fail the run). The server is the `mcp` SDK's own, on loopback,
called by the real `mcp` client; its tool list comes from the last online eval."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.store import Run, Store
from gateway.testing.fake_llm import ScriptedModel, answer, call
from gateway.testing.mcp_server import McpTestServer
from tests.fixtures import requires_fixtures
from tests.live import live_gateway
from tests.test_eval import eval_cli, eval_steps, tool_step

pytestmark = requires_fixtures

RULE = """
- name: triage
  on: {source: shop, event: orders/create}
  assistant:
    prompt: "Order {{ payload.name }}"
    tools: [gh.lookup, gh.add_comment]
"""
LOOKUP = {"issue": 3}
COMMENT = {"issue": 3, "body": "Order #1 is about this"}


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as scripted:
        yield scripted


def live_run(tmp_path: Path, server: McpTestServer, model: ScriptedModel) -> Any:
    """One live run that looked issue 3 up on the MCP server; its lookup step."""
    model.script(call("gh__lookup", LOOKUP), answer("Issue 3 is open."))
    models = {"default": {"api": "responses", "base_url": model.url, "model": "m"}}
    mcp = {"gh": {"url": server.url, "timeout": 5}}
    with live_gateway(tmp_path, RULE, models=models, mcp=mcp) as gw:
        gw.post_order("e1", name="#1")
        (run,) = gw.finished_runs(1)
        assert run.status == "succeeded"
        return tool_step(gw.steps(run.id))


def eval_runs(path: Path) -> list[Run]:
    async def read() -> list[Run]:
        store = Store(f"sqlite:///{path}")
        await store.open()
        try:
            return await store.runs.find(limit=100, oldest_first=True)
        finally:
            await store.close()

    return asyncio.run(read())


def test_offline_eval_replays_read_only_mcp_calls_and_reaches_no_mcp_server(
    tmp_path: Path, model: ScriptedModel
) -> None:
    server = McpTestServer(tmp_path / "mcp-calls.jsonl")
    with server.serving():
        lookup = live_run(tmp_path, server, model)
        # Online, the read-only lookup runs for real; the eval keeps the server's tool list.
        model.script(call("gh__lookup", LOOKUP), answer("Still open."))
        code, output, _ = eval_cli(tmp_path, RULE, "--last", "1")
        assert code == 0, output
        assert server.calls("lookup") == [{"tool": "lookup", **LOOKUP}] * 2
    before = server.calls()

    # The server is down: a request to it would fail the run.
    model.script(call("gh__lookup", LOOKUP), call("gh__add_comment", COMMENT), answer("Commented."))
    code, output, report = eval_cli(tmp_path, RULE, "--last", "1", "--offline")

    assert code == 0, output
    assert server.calls() == before
    (event,) = report["events"]  # type: ignore[misc]
    assert event["candidate"]["runs"] == {"triage": "succeeded"}
    calls = [(c["tool"], c["status"]) for c in event["candidate"]["calls"]]
    assert calls == [("gh.lookup", "succeeded"), ("gh.add_comment", "shadowed")]
    # The replayed lookup's result is the live run's, as journaled, and went to the model.
    last = eval_runs(tmp_path / "eval.db")[-1]
    assert tool_step(eval_steps(tmp_path / "eval.db", last.id)).result == lookup.result
    outputs = [
        i["output"] for i in model.requests[-2]["input"] if i.get("type") == "function_call_output"
    ]
    assert "Issue 3" in outputs[0]


def test_offline_eval_without_a_kept_tool_list_says_so_and_reaches_no_server(
    tmp_path: Path, model: ScriptedModel
) -> None:
    server = McpTestServer(tmp_path / "mcp-calls.jsonl")
    with server.serving():
        live_run(tmp_path, server, model)
    before = server.calls()

    code, output, report = eval_cli(tmp_path, RULE, "--last", "1", "--offline")

    assert code == 0, output
    assert server.calls() == before
    (event,) = report["events"]  # type: ignore[misc]
    assert event["candidate"]["runs"] == {"triage": "failed"}
    (run,) = eval_runs(tmp_path / "eval.db")
    assert "no tool list of MCP server 'gh' is kept in the eval store" in (run.error or "")
