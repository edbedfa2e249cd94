"""`gateway check` and `gateway tools` with MCP servers: the rules compared with the live tool
lists, a warning (not a failure) when a server does not answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway import cli
from gateway.testing.mcp_server import McpTestServer

ACTIONS = """
- name: comment
  on: {source: shop, event: orders/create}
  actions:
    - gh.add_comment: {issue: ISSUE, body: "Order {{ payload.name }}"}
    - gh.lookup: {issue: 1}
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[McpTestServer]:
    with McpTestServer(tmp_path / "mcp-calls.jsonl").serving() as running:
        yield running


def configure(tmp_path: Path, url: str, rules: str = ACTIONS.replace("ISSUE", "3")) -> Path:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "r.yaml").write_text(rules)
    path = tmp_path / "gateway.yaml"
    document = {"rules": "rules", "mcp": {"gh": {"url": url, "timeout": 3}}}
    path.write_text(yaml.safe_dump(document))
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.app, list(args))
    return result.exit_code, result.output


def test_check_passes_when_the_server_offers_every_tool_the_rules_name(
    tmp_path: Path, server: McpTestServer
) -> None:
    code, output = run("check", "--config", str(configure(tmp_path, server.url)))

    assert code == 0, output
    assert "warning" not in output


def test_check_fails_naming_a_tool_the_server_no_longer_offers(
    tmp_path: Path, server: McpTestServer
) -> None:
    server.hide("add_comment")
    code, output = run("check", "--config", str(configure(tmp_path, server.url)))

    assert code == 1
    assert "gh.add_comment: the server 'gh' does not offer this tool" in output


def test_check_fails_on_literal_arguments_the_servers_schema_refuses(
    tmp_path: Path, server: McpTestServer
) -> None:
    rules = ACTIONS.replace("ISSUE", "3").replace("{issue: 1}", "{issue: 0, extra: true}")
    rules = rules.replace("gh.lookup", "gh.add_comment")
    code, output = run("check", "--config", str(configure(tmp_path, server.url, rules)))

    assert code == 1
    assert "rule comment: gh.add_comment:" in output


def test_check_only_warns_when_the_server_does_not_answer(tmp_path: Path) -> None:
    down = McpTestServer(tmp_path / "mcp-calls.jsonl")
    with down.serving():
        url = down.url
    code, output = run("check", "--config", str(configure(tmp_path, url)))

    assert code == 0, output
    assert "warning" in output and "mcp.gh: not compared with the rules" in output


def test_tools_lists_the_servers_tools_with_their_schemas_and_side_effects(
    tmp_path: Path, server: McpTestServer
) -> None:
    code, output = run("tools", "--json", "--config", str(configure(tmp_path, server.url)))

    assert code == 0, output
    listed = {entry["tool"]: entry for entry in json.loads(output)}
    assert listed["gh.lookup"]["side_effects"] is False
    assert listed["gh.add_comment"]["side_effects"] is True
    assert listed["gh.add_comment"]["parameters"]["required"] == ["issue", "body"]
    assert "jira.create_issue" in listed


def test_annotations_decide_side_effects_and_config_overrides_them(
    server: McpTestServer,
) -> None:
    import asyncio

    from gateway.mcp.catalogue import Catalogue
    from gateway.mcp.settings import McpServerConfig

    settings = McpServerConfig.model_validate(
        {
            "url": server.url,
            "tools": {"lookup": {"side_effects": True}, "publish": {"idempotent": True}},
        }
    )
    catalogue = Catalogue({}, {"gh": settings})
    asyncio.run(catalogue.prepare(["gh.*"]))
    seen = {
        name: (tool.side_effects, getattr(tool, "idempotent", None))
        for name, tool in catalogue.items()
    }

    assert seen["gh.add_comment"] == (True, False)  # no hints: side effects, not idempotent
    assert seen["gh.set_label"] == (True, True)  # idempotentHint
    assert seen["gh.huge"] == (False, True)  # readOnlyHint
    assert seen["gh.lookup"] == (True, True)  # read-only, but config says it has side effects
    assert seen["gh.publish"] == (True, True)  # config says it is safe to repeat


def test_a_tool_list_change_is_seen_at_once_when_the_server_allows_no_caching(
    server: McpTestServer,
) -> None:
    import asyncio

    from gateway.mcp.catalogue import Catalogue
    from gateway.mcp.settings import McpServerConfig
    from gateway.tools import PermanentToolError

    # The SDK's server lists with ttlMs 0: the gateway's own list_ttl (300 s) does not hold it.
    catalogue = Catalogue({}, {"gh": McpServerConfig(url=server.url, list_ttl=300)})

    async def go() -> str:
        await catalogue.prepare(["gh.add_comment"])
        server.hide("add_comment")
        with pytest.raises(PermanentToolError) as gone:
            await catalogue.prepare(["gh.add_comment"])
        return str(gone.value)

    assert "gh.add_comment no longer offered" in asyncio.run(go())
    assert catalogue.servers["gh"].changed == ["gh.add_comment vanished"]


def test_check_warns_about_a_short_mcp_client_token(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    (tmp_path / "rules").mkdir()
    clients = {"ide": {"token": "sixteen-chars-ok", "scopes": ["read"]}}
    path.write_text(yaml.safe_dump({"rules": "rules", "mcp_server": {"clients": clients}}))
    code, output = run("check", "--config", str(path))

    assert code == 0, output
    assert "mcp_server.clients.ide.token: shorter than 32 characters" in output
