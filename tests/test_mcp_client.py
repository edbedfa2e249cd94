"""MCP servers' tools used by assistants and rules, governed like built-ins.

The server is built with the `mcp` SDK's own `MCPServer` (gateway/testing/mcp_server.py), on
loopback over streamable HTTP or as a subprocess over stdio; the model is the scripted one,
driven by the real `openai` client. The server's journal file says what it really received.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.testing.fake_llm import ScriptedModel, answer, call
from gateway.testing.mcp_server import McpTestServer, calls
from tests.fixtures import requires_fixtures
from tests.live import LiveGateway, live_gateway

pytestmark = [requires_fixtures]

TOKEN = "mcp-admin-token"


def assistant_rule(tools: str, policy: str = "{}") -> str:
    return f"""
- name: triage
  on: {{source: shop, event: orders/create}}
  assistant:
    instructions: You keep the issue tracker in order.
    prompt: "New order {{{{ payload.name }}}}"
    tools: {tools}
    policy: {policy}
    limits: {{steps: 6}}
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[McpTestServer]:
    with McpTestServer(tmp_path / "mcp-calls.jsonl").serving() as running:
        yield running


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as scripted:
        yield scripted


def gateway(
    tmp_path: Path, model: ScriptedModel, rules: str, mcp: dict[str, Any], **worker: Any
) -> Any:
    return live_gateway(
        tmp_path,
        rules,
        worker=worker or None,
        admin_token=TOKEN,
        models={"default": {"api": "responses", "base_url": model.url, "model": "m"}},
        mcp=mcp,
    )


def http(server: McpTestServer, **settings: Any) -> dict[str, Any]:
    return {"gh": {"url": server.url, "timeout": 5, **settings}}


def one_run(gw: LiveGateway) -> tuple[Any, list[Any]]:
    gw.post_order("e1", name="#1")
    [run] = gw.finished_runs(1)
    return run, gw.steps(run.id)


def outputs(body: dict[str, Any]) -> list[str]:
    return [i["output"] for i in body["input"] if i.get("type") == "function_call_output"]


COMMENT = {"issue": 7, "body": "Order #1 needs a look"}


def test_an_assistant_calls_an_mcp_tool_once_and_the_result_goes_back_to_the_model(
    tmp_path: Path, server: McpTestServer, model: ScriptedModel
) -> None:
    model.script(call("gh__add_comment", COMMENT), answer("Commented."))
    with gateway(tmp_path, model, assistant_rule("[gh.add_comment]"), http(server)) as gw:
        run, steps = one_run(gw)

    assert run.status == "succeeded"
    assert server.calls() == [{"tool": "add_comment", **COMMENT}]
    [tool_step] = [s for s in steps if s.kind == "tool"]
    assert (tool_step.tool, tool_step.arguments) == ("gh.add_comment", COMMENT)
    assert tool_step.result["text"] == "comment added to #7"
    assert "comment added to #7" in outputs(model.requests[1])[0]
    [definition] = model.requests[0]["tools"]
    assert definition["name"] == "gh__add_comment"
    assert definition["parameters"]["properties"]["issue"]["minimum"] == 1


def test_a_tool_of_the_server_not_on_the_allowlist_is_not_called(
    tmp_path: Path, server: McpTestServer, model: ScriptedModel
) -> None:
    model.script(call("gh__add_comment", COMMENT), answer("Could not."))
    with gateway(tmp_path, model, assistant_rule("[gh.lookup]"), http(server)) as gw:
        run, _steps = one_run(gw)

    assert run.status == "succeeded"
    assert "unknown tool 'gh.add_comment'" in outputs(model.requests[1])[0]
    assert server.calls() == []


def test_a_wildcard_allowlist_offers_every_tool_of_the_server(
    tmp_path: Path, server: McpTestServer, model: ScriptedModel
) -> None:
    model.script(call("gh__lookup", {"issue": 3}), answer("Read it."))
    with gateway(tmp_path, model, assistant_rule("[gh.*]"), http(server)) as gw:
        run, _ = one_run(gw)

    assert run.status == "succeeded"
    offered = {t["name"] for t in model.requests[0]["tools"]}
    assert {"gh__add_comment", "gh__lookup", "gh__set_label", "gh__huge"} <= offered
    assert server.calls("lookup") == [{"tool": "lookup", "issue": 3}]


def test_arguments_that_break_the_servers_schema_go_back_to_the_model_unsent(
    tmp_path: Path, server: McpTestServer, model: ScriptedModel
) -> None:
    model.script(call("gh__add_comment", {"issue": 0, "body": "x"}), answer("Oops."))
    with gateway(tmp_path, model, assistant_rule("[gh.add_comment]"), http(server)) as gw:
        run, steps = one_run(gw)

    assert run.status == "succeeded"
    assert "invalid arguments for gh.add_comment: issue:" in outputs(model.requests[1])[0]
    assert [s.status for s in steps if s.kind == "tool"] == ["invalid"]
    assert server.calls() == []


def test_a_policy_constraint_refuses_an_mcp_call(
    tmp_path: Path, server: McpTestServer, model: ScriptedModel
) -> None:
    model.script(call("gh__add_comment", {"issue": 8, "body": "x"}), answer("Refused."))
    rule = assistant_rule("[gh.add_comment]", "{gh.add_comment: {issue: [7]}}")
    with gateway(tmp_path, model, rule, http(server)) as gw:
        run, _steps = one_run(gw)

    assert run.status == "succeeded"
    assert "refused by policy" in outputs(model.requests[1])[0]
    assert server.calls() == []


def test_an_mcp_call_under_approval_waits_and_runs_once_approved(
    tmp_path: Path, server: McpTestServer, model: ScriptedModel
) -> None:
    model.script(call("gh__add_comment", COMMENT), answer("Commented."))
    rule = assistant_rule("[gh.*]", "{gh.add_comment: {approve: true}}")
    with gateway(tmp_path, model, rule, http(server)) as gw:
        gw.post_order("e1", name="#1")
        run = gw.wait_for(lambda: [r for r in gw.runs() if r.status == "awaiting_approval"])[0]
        assert server.calls() == []
        [waiting] = [s for s in gw.steps(run.id) if s.status == "awaiting_approval"]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        approved = gw.client.post(
            f"/api/steps/{waiting.id}/approve",
            headers=headers,
            json={"by": "alice", "digest": waiting.arguments_digest},
        )
        assert approved.status_code == 200, approved.text
        [run] = gw.finished_runs(1)

    assert run.status == "succeeded"
    assert server.calls() == [{"tool": "add_comment", **COMMENT}]


def test_a_tool_that_fails_tells_the_model_and_is_not_retried(
    tmp_path: Path, server: McpTestServer, model: ScriptedModel
) -> None:
    model.script(call("gh__fails", {"reason": "quota"}), answer("It failed."))
    with gateway(tmp_path, model, assistant_rule("[gh.fails]"), http(server)) as gw:
        run, _steps = one_run(gw)

    assert run.status == "succeeded"
    assert "gh.fails failed" in outputs(model.requests[1])[0]
    assert len(server.calls("fails")) == 1


def test_a_huge_result_is_capped_before_the_journal_and_the_model(
    tmp_path: Path, server: McpTestServer, model: ScriptedModel
) -> None:
    model.script(call("gh__huge", {"size": 200_000}), answer("Big."))
    mcp = http(server, max_result_bytes=4096)
    with gateway(tmp_path, model, assistant_rule("[gh.huge]"), mcp) as gw:
        run, steps = one_run(gw)

    assert run.status == "succeeded"
    [tool_step] = [s for s in steps if s.kind == "tool"]
    assert tool_step.result["truncated"] is True
    assert tool_step.result["bytes"] > 200_000
    assert len(json.dumps(tool_step.result)) <= 4096
    assert len(outputs(model.requests[1])[0]) <= 4096


def test_a_result_just_under_the_cap_is_kept_whole(
    tmp_path: Path, server: McpTestServer, model: ScriptedModel
) -> None:
    # {"text": "xxx…"} is the size plus 12 bytes of JSON around it.
    model.script(call("gh__huge", {"size": 4096 - 12}), answer("Fits."))
    mcp = http(server, max_result_bytes=4096)
    with gateway(tmp_path, model, assistant_rule("[gh.huge]"), mcp) as gw:
        _run, steps = one_run(gw)

    [tool_step] = [s for s in steps if s.kind == "tool"]
    assert "truncated" not in tool_step.result
    assert len(tool_step.result["text"]) == 4096 - 12


def test_a_server_that_is_down_makes_the_run_retry_then_succeed_once_it_is_up(
    tmp_path: Path, model: ScriptedModel
) -> None:
    down = McpTestServer(tmp_path / "mcp-calls.jsonl")
    with down.serving():
        mcp = http(down)
    model.script(call("gh__add_comment", COMMENT), answer("Commented."))
    rule = assistant_rule("[gh.add_comment]")
    with gateway(tmp_path, model, rule, mcp, backoff_base=0.3, backoff_max=0.3) as gw:
        gw.post_order("e1", name="#1")
        gw.wait_for(lambda: [r for r in gw.runs() if r.attempt >= 2])
        assert model.requests == []  # no model turn before the tools are known
        with down.serving():
            [run] = gw.finished_runs(1)

    assert run.status == "succeeded"
    assert down.calls("add_comment") == [{"tool": "add_comment", **COMMENT}]


def test_a_server_that_stays_down_ends_the_run_dead_not_crashed(
    tmp_path: Path, model: ScriptedModel
) -> None:
    down = McpTestServer(tmp_path / "mcp-calls.jsonl")
    with down.serving():
        mcp = http(down)
    with gateway(tmp_path, model, assistant_rule("[gh.lookup]"), mcp, max_attempts=2) as gw:
        run, _ = one_run(gw)
        assert gw.client.get("/readyz").status_code == 200

    assert run.status == "dead"
    assert "unreachable (not sent)" in (run.error or "")


def test_a_tool_that_vanished_from_the_server_fails_the_run_with_its_name(
    tmp_path: Path, server: McpTestServer, model: ScriptedModel
) -> None:
    server.hide("add_comment")
    with gateway(tmp_path, model, assistant_rule("[gh.add_comment]"), http(server)) as gw:
        run, _ = one_run(gw)

    assert run.status == "failed"
    assert "gh.add_comment no longer offered" in (run.error or "")
    assert model.requests == []


def test_a_slow_tool_past_the_timeout_is_an_error_not_a_hang(
    tmp_path: Path, server: McpTestServer, model: ScriptedModel
) -> None:
    model.script(call("gh__slow", {"seconds": 5}))
    mcp = http(server, timeout=0.5)
    with gateway(tmp_path, model, assistant_rule("[gh.slow]"), mcp, max_attempts=1) as gw:
        run, _ = one_run(gw)

    assert run.status == "dead"
    assert "no answer within 0.5 s" in (run.error or "")


def test_an_image_result_becomes_a_run_file(
    tmp_path: Path, server: McpTestServer, model: ScriptedModel
) -> None:
    model.script(call("gh__chart", {}), answer("Charted."))
    with gateway(tmp_path, model, assistant_rule("[gh.chart]"), http(server)) as gw:
        _run, steps = one_run(gw)

    [tool_step] = [s for s in steps if s.kind == "tool"]
    assert tool_step.result["files"] == ["gh.chart-0.png"]


STDIO_ACTIONS = """
- name: comment
  on: {source: shop, event: orders/create}
  actions:
    - local.add_comment: {issue: 5, body: "Order {{ payload.name }}"}
    - local.lookup: {issue: 5}
"""


def test_a_direct_action_rule_calls_tools_of_a_stdio_server(
    tmp_path: Path, model: ScriptedModel
) -> None:
    journal = tmp_path / "stdio-calls.jsonl"
    mcp = {
        "local": {
            "command": sys.executable,
            "args": ["-m", "gateway.testing.mcp_server", str(journal)],
            "timeout": 20,
        }
    }
    with gateway(tmp_path, model, STDIO_ACTIONS, mcp) as gw:
        run, steps = one_run(gw)

    assert run.status == "succeeded", run.error
    assert calls(journal) == [
        {"tool": "add_comment", "issue": 5, "body": "Order #1"},
        {"tool": "lookup", "issue": 5},
    ]
    assert json.loads(steps[1].result["text"])["state"] == "open"


def test_rules_may_name_tools_of_a_configured_server_only(tmp_path: Path) -> None:
    from gateway import config as config_module
    from gateway.errors import ConfigError
    from gateway.ruleset import load_ruleset

    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(assistant_rule("[gh.add_comment, other.x]"))
    (tmp_path / "gateway.yaml").write_text(
        "rules: rules\nmodels: {default: {model: m}}\nmcp: {gh: {url: http://127.0.0.1:9/mcp}}\n"
    )
    config = config_module.load(tmp_path / "gateway.yaml", environ={})
    with pytest.raises(ConfigError) as raised:
        load_ruleset(config)
    [problem] = raised.value.problems
    assert "unknown tool 'other.x'" in problem


def test_an_mcp_server_may_not_take_a_built_in_familys_name(tmp_path: Path) -> None:
    from gateway import config as config_module
    from gateway.errors import ConfigError

    (tmp_path / "gateway.yaml").write_text("mcp: {jira: {url: http://127.0.0.1:9/mcp}}\n")
    with pytest.raises(ConfigError, match="already a tool family's name"):
        config_module.load(tmp_path / "gateway.yaml", environ={})
