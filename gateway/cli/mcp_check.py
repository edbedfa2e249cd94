"""What `gateway check` and `gateway tools` learn from the MCP servers themselves: the tools
the rules name compared with the live lists (a server that does not answer is a warning, not a
failure: it may be down only now), and the servers' tools for the catalogue.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gateway.config import Config
from gateway.mcp.catalogue import WILDCARD, Catalogue
from gateway.rules import templates
from gateway.rules.loader import RuleSet
from gateway.tools import TOOLS, ToolError, describe_error


async def compare(config: Config, rules: RuleSet) -> tuple[list[str], list[str]]:
    """(problems, warnings): each MCP tool a rule names that its server does not offer, and a
    direct action's literal arguments its schema refuses; a server that cannot be listed."""
    catalogue = Catalogue(TOOLS, config.mcp)
    problems: list[str] = []
    warnings: list[str] = []
    for name, server in list(catalogue.servers.items()):
        try:
            await catalogue.prepare([f"{name}{WILDCARD}"])
        except ToolError as exc:
            warnings.append(f"mcp.{name}: not compared with the rules: {exc}")
            catalogue.servers.pop(name, None)
            continue
        if server.settings.tools:
            unknown = sorted(set(server.settings.tools) - set(await server.tools()))
            warnings += [
                f"mcp.{name}.tools.{tool}: the server offers no such tool" for tool in unknown
            ]
    for rule in rules.rules:
        for tool_name in rule.tools:
            found = catalogue.server_of(tool_name)
            if found is None or tool_name.endswith(WILDCARD) or tool_name in catalogue:
                continue
            offered = ", ".join(sorted(await found.tools())) or "none"
            problems.append(
                f"rule {rule.name}: {tool_name}: the server {found.name!r} does not offer "
                f"this tool (it offers: {offered})"
            )
        for action in rule.actions:
            tool = catalogue.get(action.tool)
            if tool is None or catalogue.server_of(action.tool) is None:
                continue
            if templates.is_template(action.arguments):
                continue  # rendered per event; checked when called
            try:
                tool.validate(action.arguments)
            except ValidationError as exc:
                problems.append(f"rule {rule.name}: {action.tool}: {describe_error(exc)}")
    return problems, warnings


async def catalogue_entries(config: Config) -> tuple[list[dict[str, Any]], list[str]]:
    """The MCP servers' tools as `gateway tools` lists them, and a warning per server that
    did not answer."""
    catalogue = Catalogue(TOOLS, config.mcp)
    warnings: list[str] = []
    for name in catalogue.servers:
        try:
            await catalogue.prepare([f"{name}{WILDCARD}"])
        except ToolError as exc:
            warnings.append(f"mcp.{name}: {exc}")
    entries = []
    for tool_name in catalogue.expand(f"{name}{WILDCARD}" for name in catalogue.servers):
        tool = catalogue[tool_name]
        entries.append(
            {
                "tool": tool_name,
                "side_effects": tool.side_effects,
                "recoverable": tool.recover_function is not None,
                **tool.definition(),
            }
        )
    return entries, warnings
