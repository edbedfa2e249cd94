"""`kill -9` while an MCP call is in flight: the restarted gateway never makes a call with side
effects again unless the tool is idempotent (its annotations, or config, say so)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from gateway.testing.fake_llm import ScriptedModel, answer, call, conversation_text
from gateway.testing.mcp_server import McpTestServer
from tests.fixtures import load, requires_fixtures
from tests.process import GatewayProcess, wait_until

pytestmark = [requires_fixtures, pytest.mark.slow]

RULE = """
- name: publish
  on: {source: shop, event: orders/create}
  assistant:
    instructions: Publish each order once.
    prompt: "Order {{ payload.name }}"
    tools: [gh.publish, gh.set_label]
"""


def _crash_during(
    tool: str, arguments: dict[str, object], tmp_path: Path, write_config: Callable[..., Path]
) -> tuple[McpTestServer, ScriptedModel]:
    server = McpTestServer(tmp_path / "mcp-calls.jsonl")
    model = ScriptedModel(
        call(f"gh__{tool}", {**arguments, "seconds": 3}),
        answer("Done."),
    )
    with server.serving(), model:
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / "publish.yaml").write_text(RULE)
        config = write_config(
            models={"default": {"api": "responses", "base_url": model.url, "model": "m"}},
            mcp={"gh": {"url": server.url, "timeout": 60}},
            worker={"backoff_base": 0.05, "backoff_max": 0.1},
        )
        gateway = GatewayProcess(config).start()
        order = load("shopify", "orders_create")
        try:
            httpx2.post(
                f"{gateway.url}/hooks/shop", content=order.body, headers=order.headers
            ).raise_for_status()
            wait_until(lambda: len(server.calls(tool)) == 1)
            gateway.kill()  # journaled as started, the server is still working on it
            gateway = GatewayProcess(config).start()
            wait_until(lambda: len(model.requests) >= 2, timeout=60)
        finally:
            gateway.stop()
    return server, model


def test_a_call_with_side_effects_in_flight_at_a_crash_is_not_made_again(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    server, model = _crash_during("publish", {"text": "#1"}, tmp_path, write_config)

    assert len(server.calls("publish")) == 1
    told = conversation_text(model.requests[1])
    assert "outcome is unknown" in told and "not called again" in told


def test_an_idempotent_call_in_flight_at_a_crash_is_made_again(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    server, model = _crash_during("set_label", {"issue": 1, "label": "vip"}, tmp_path, write_config)

    assert len(server.calls("set_label")) == 2
    assert "labelled vip" in conversation_text(model.requests[1])
