"""`gateway eval --offline`: read-only tools, built-in and MCP, answer with what the live runs
journaled for the same call (tool and validated arguments), and reach nothing outside.

An MCP server is not even listed: its tools are those of the last listing an eval kept in the
eval store (`kept_catalogue`); without one, its tools fail for good, saying so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import mcp_types

from gateway.errors import PermanentToolError
from gateway.mcp.catalogue import Catalogue
from gateway.mcp.connection import McpServer
from gateway.mcp.settings import McpServerConfig
from gateway.mcp.tool import McpTool
from gateway.store import Run, Store
from gateway.store.records import call_digest
from gateway.store.status import StepStatus
from gateway.tools import Tool, ToolContext


class _FromJournal:
    """A tool's `call` answered from the live journal (by `call_digest`)."""

    name: str
    journal: Mapping[str, Any]

    async def call(self, context: ToolContext[Any, Any], arguments: dict[str, Any]) -> Any:
        digest = call_digest(self.name, arguments)
        if digest not in self.journal:
            raise PermanentToolError(
                f"offline: the live runs made no {self.name} call with these arguments"
            )
        return self.journal[digest]


@dataclass
class ReplayedTool(_FromJournal, Tool):
    """A read-only built-in tool whose calls are answered from the live journal."""

    journal: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ReplayedMcpTool(_FromJournal, McpTool):
    """A read-only MCP tool whose calls are answered from the live journal (its arguments
    still checked against the kept schema)."""

    journal: Mapping[str, Any] = field(default_factory=dict)

    async def call(self, context: ToolContext[Any, Any], arguments: dict[str, Any]) -> Any:
        return await _FromJournal.call(self, context, self.validate(arguments))


async def journaled_results(store: Store, runs: Iterable[Run]) -> dict[str, Any]:
    """The results of the succeeded tool calls of `runs`, by `call_digest`."""
    results: dict[str, Any] = {}
    for run in runs:
        for step in await store.steps.of_run(run.id):
            if step.kind == "tool" and step.status == StepStatus.SUCCEEDED:
                results[call_digest(step.tool, step.arguments)] = step.result
    return results


def replayed(tool: Tool, journal: Mapping[str, Any]) -> Tool:
    """`tool` answering from `journal` if it is read-only; as it is otherwise (a candidate
    rule is in shadow mode: a call with side effects is recorded, not made)."""
    if tool.side_effects:
        return tool
    values = {f.name: getattr(tool, f.name) for f in fields(tool)}
    if isinstance(tool, McpTool):
        return ReplayedMcpTool(**values, journal=journal)
    return ReplayedTool(**values, journal=journal)


def offline_tools(tools: Mapping[str, Tool], journal: Mapping[str, Any]) -> dict[str, Tool]:
    """`tools` with every read-only one answering from `journal` instead of being called."""
    return {name: replayed(tool, journal) for name, tool in tools.items()}


class KeptServer(McpServer):
    """An MCP server as the eval store last saw it: its kept tool list, and no connection."""

    def __init__(self, name: str, settings: McpServerConfig, kept: Mapping[str, Any] | None):
        super().__init__(name, settings)
        self.kept = kept

    async def tools(self, *, refresh: bool = False) -> dict[str, mcp_types.Tool]:
        if self.kept is None:
            raise PermanentToolError(
                f"offline: no tool list of MCP server {self.name!r} is kept in the eval store "
                "(run one eval without --offline first)"
            )
        return {name: mcp_types.Tool.model_validate(t) for name, t in self.kept.items()}

    async def call(
        self, tool: str, arguments: dict[str, Any], *, key: str
    ) -> mcp_types.CallToolResult:
        raise PermanentToolError(f"offline: {self.name}.{tool} is not called")


async def kept_catalogue(
    store: Store,
    builtin: Mapping[str, Tool],
    servers: Mapping[str, McpServerConfig],
    journal: Mapping[str, Any],
) -> Catalogue:
    """The offline eval's tools: `builtin` and the MCP tools of the listings kept in the eval
    `store`, each read-only one answering from `journal`."""
    catalogue = Catalogue(
        offline_tools(builtin, journal), servers, wrap=lambda tool: replayed(tool, journal)
    )
    for name, settings in servers.items():
        catalogue.servers[name] = KeptServer(name, settings, await store.evals.listing(name))
    return catalogue


async def keep_listings(store: Store, catalogue: Catalogue) -> None:
    """Keep in the eval `store` the tool list of each MCP server the eval listed."""
    for name, server in catalogue.servers.items():
        if server.listing is not None and not isinstance(server, KeptServer):
            tools = {
                tool: listed.model_dump(mode="json", by_alias=True, exclude_none=True)
                for tool, listed in server.listing.items()
            }
            await store.evals.keep_listing(name, tools)
