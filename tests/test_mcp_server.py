"""The gateway's own `/mcp`, driven by the `mcp` SDK's client: per-client tokens, and scopes
that decide which tools a client sees and may call; approvals bound to the argument digest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gateway.testing.fake_llm import ScriptedModel, answer, call
from tests.fixtures import requires_fixtures
from tests.live import LiveGateway, live_gateway
from tests.recording import CALLS

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]

T = TypeVar("T")
TOKENS = {
    "ide": "ide-token-0123456789",
    "ops": "ops-token-0123456789",
    "approver": "approver-token-0123456789",
}
CLIENTS = {
    "ide": {"token": TOKENS["ide"], "scopes": ["read"]},
    "ops": {"token": TOKENS["ops"], "scopes": ["read", "operate"]},
    "approver": {"token": TOKENS["approver"], "scopes": ["approve"]},
}
READ = {
    "search_events",
    "search_runs",
    "get_run",
    "get_thread",
    "list_schedules",
    "list_rules",
    "list_tools",
}
OPERATE = {"replay_event", "retry_run", "fire_schedule", "dry_run"}
APPROVE = {"pending_approvals", "approve_step", "reject_step"}
RULE = """
- name: triage
  on: {source: shop, event: orders/create}
  assistant:
    prompt: "Order {{ payload.name }}"
    tools: [test.record]
    policy: {test.record: {approve: true}}
"""
VIP = {"label": "vip", "delay_ms": None, "order": None}


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as scripted:
        yield scripted


@pytest.fixture
def gw(tmp_path: Path, model: ScriptedModel) -> Iterator[LiveGateway]:
    profile = {"api": "responses", "base_url": model.url, "model": "m"}
    with live_gateway(
        tmp_path, RULE, models={"default": profile}, mcp_server={"clients": CLIENTS}
    ) as gateway:
        yield gateway


def as_client(gw: LiveGateway, name: str, use: Callable[[Client], Awaitable[T]]) -> T:
    async def go() -> T:
        headers = {"Authorization": f"Bearer {TOKENS[name]}"}
        async with httpx2.AsyncClient(headers=headers, timeout=10) as http:
            transport = streamable_http_client(f"{gw.url}/mcp", http_client=http)
            async with Client(transport, read_timeout_seconds=10) as client:
                return await use(client)

    return asyncio.run(go())


async def names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


def tool_call(name: str, arguments: dict[str, Any]) -> Callable[[Client], Awaitable[Any]]:
    async def use(client: Client) -> Any:
        return await client.call_tool(name, arguments)

    return use


def test_each_client_sees_only_the_tools_of_its_scopes(gw: LiveGateway) -> None:
    assert as_client(gw, "ide", names) == READ
    assert as_client(gw, "ops", names) == READ | OPERATE
    assert as_client(gw, "approver", names) == APPROVE


def test_a_request_without_a_valid_token_is_refused(gw: LiveGateway) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    missing = gw.client.post("/mcp", json=body)
    wrong = gw.client.post("/mcp", json=body, headers={"Authorization": "Bearer nope"})

    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.headers["www-authenticate"].startswith("Bearer")


def test_a_read_token_can_search_but_cannot_replay_or_approve(
    gw: LiveGateway, model: ScriptedModel
) -> None:
    model.script(answer("Nothing to do."))
    gw.post_order("e1", name="#1")
    gw.finished_runs(1)

    found = as_client(gw, "ide", tool_call("search_events", {"limit": 5}))
    replay = as_client(gw, "ide", tool_call("replay_event", {"event_id": 1}))
    approve = as_client(gw, "ide", tool_call("approve_step", {"step_id": 1, "digest": "0" * 64}))

    assert not found.is_error and found.structured_content["items"][0]["id"] == 1
    assert replay.is_error and approve.is_error
    assert len(gw.runs()) == 1  # nothing was replayed


def test_listings_are_paginated(gw: LiveGateway, model: ScriptedModel) -> None:
    model.script(answer("One."), answer("Two."))
    gw.post_order("e1", name="#1")
    gw.post_order("e2", name="#2")
    gw.finished_runs(2)

    first = as_client(gw, "ide", tool_call("search_events", {"limit": 1}))
    cursor = first.structured_content["next_before"]
    second = as_client(gw, "ide", tool_call("search_events", {"limit": 1, "before": cursor}))
    too_many = as_client(gw, "ide", tool_call("search_events", {"limit": 51}))

    assert [e["id"] for e in first.structured_content["items"]] == [2]
    assert [e["id"] for e in second.structured_content["items"]] == [1]
    assert too_many.is_error  # over the page size of 50


def test_an_operate_token_replays_an_event(gw: LiveGateway, model: ScriptedModel) -> None:
    model.script(answer("One."), answer("Again."))
    gw.post_order("e1", name="#1")
    gw.finished_runs(1)

    replayed = as_client(gw, "ops", tool_call("replay_event", {"event_id": 1}))

    assert not replayed.is_error, replayed.content
    assert len(gw.finished_runs(2)) == 2


def test_approval_is_bound_to_the_digest_of_the_arguments_shown(
    gw: LiveGateway, model: ScriptedModel, capfd: pytest.CaptureFixture[str]
) -> None:
    model.script(call("test__record", VIP), answer("Recorded."))
    gw.post_order("e1", name="#1")
    gw.wait_for(lambda: [r for r in gw.runs() if r.status == "awaiting_approval"])

    pending = as_client(gw, "approver", tool_call("pending_approvals", {}))
    [item] = pending.structured_content["items"]
    other = as_client(
        gw, "approver", tool_call("approve_step", {"step_id": item["step_id"], "digest": "a" * 64})
    )
    assert other.is_error and CALLS == []
    approved = as_client(
        gw,
        "approver",
        tool_call("approve_step", {"step_id": item["step_id"], "digest": item["arguments_digest"]}),
    )
    [run] = gw.finished_runs(1)

    assert item["arguments"]["label"] == "vip" and item["tool"] == "test.record"
    assert not approved.is_error, approved.content
    assert run.status == "succeeded"
    assert [c["label"] for c in CALLS] == ["vip"]
    [step] = [s for s in gw.steps(run.id) if s.tool == "test.record"]
    assert step.decided_by == "mcp:approver"
    logged = capfd.readouterr().out
    assert "mcp.call" in logged and "approver" in logged


def test_the_catalogue_an_agent_reads_includes_the_mcp_servers_tools(
    tmp_path: Path, model: ScriptedModel
) -> None:
    from gateway.testing.mcp_server import McpTestServer

    profile = {"api": "responses", "base_url": model.url, "model": "m"}
    with McpTestServer(tmp_path / "calls.jsonl").serving() as tracker:
        mcp = {"gh": {"url": tracker.url}, "gone": {"url": "http://127.0.0.1:9/mcp", "timeout": 2}}
        with live_gateway(
            tmp_path, RULE, models={"default": profile}, mcp=mcp, mcp_server={"clients": CLIENTS}
        ) as gateway:
            listed = as_client(gateway, "ide", tool_call("list_tools", {})).structured_content

    tools = {t["name"]: t["side_effects"] for t in listed["tools"]}
    assert tools["gh.lookup"] is False and tools["gh.add_comment"] is True
    assert tools["test.record"] is True
    assert listed["unreachable"] == ["gone"]
