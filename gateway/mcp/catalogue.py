"""The tools a gateway may call: the built-in families' and those of its MCP servers, as one
mapping. An MCP server's tools are known once listed: `prepare` lists the servers a rule
names (cached) before its run, so the worker and the assistant look tools up as usual.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from gateway.mcp.settings import McpServerConfig
from gateway.tools import PermanentToolError, Tool

if TYPE_CHECKING:
    from gateway.mcp.connection import McpServer
    from gateway.mcp.tool import McpTool

WILDCARD = ".*"


class Catalogue(Mapping[str, Tool]):
    """Built-in tools by name, and `SERVER.TOOL` for each tool an MCP server listed."""

    def __init__(
        self,
        builtin: Mapping[str, Tool],
        servers: Mapping[str, McpServerConfig] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wrap: Callable[[McpTool], Tool] | None = None,
    ) -> None:
        self.builtin = builtin
        # What each listed tool is made into (`gateway eval --offline`: replayed), if given.
        self.wrap = wrap
        configured = servers or {}
        self.servers: dict[str, McpServer] = {}
        # The MCP client (and its schema validator) is imported only by a gateway that has
        # servers: tens of MB of resident memory the others never use (docs/benchmarks.md).
        if configured:
            from gateway.mcp.connection import McpServer

            self.servers = {name: McpServer(name, s, clock=clock) for name, s in configured.items()}
        self._listed: dict[str, Tool] = {}

    def server_of(self, name: str) -> McpServer | None:
        """The MCP server whose tool `name` (or wildcard `SERVER.*`) is, if any."""
        return self.servers.get(name.partition(".")[0])

    async def prepare(self, names: Iterable[str]) -> None:
        """List the servers that `names` come from (within their TTL, from the cache), so each
        named tool can be looked up. Raises a retryable `ToolError` when a server cannot be
        reached, and `PermanentToolError` when it no longer offers a named tool."""
        names = list(names)
        for server in {s.name: s for n in names if (s := self.server_of(n))}.values():
            from gateway.mcp.tool import make_tool  # a server exists: so does its client

            listed = await server.tools()
            prefix = f"{server.name}."
            for name in [n for n in self._listed if n.startswith(prefix)]:
                del self._listed[name]
            for remote in listed.values():
                made = make_tool(server, remote)
                self._listed[made.name] = self.wrap(made) if self.wrap is not None else made
        gone = [n for n in names if self.server_of(n) and not n.endswith(WILDCARD)]
        gone = [n for n in gone if n not in self._listed]
        if gone:
            raise PermanentToolError(
                f"MCP tool(s) {', '.join(gone)} no longer offered by the server "
                "(its tool list changed; `gateway check` compares the rules with it)"
            )

    def expand(self, names: Iterable[str]) -> list[str]:
        """`names` with each `SERVER.*` replaced by the server's listed tools (after `prepare`)."""
        out: list[str] = []
        for name in names:
            if name.endswith(WILDCARD) and self.server_of(name):
                prefix = name[: -len(WILDCARD)] + "."
                out += sorted(n for n in self._listed if n.startswith(prefix))
            else:
                out.append(name)
        return out

    def __getitem__(self, name: str) -> Tool:
        found = self._listed.get(name)
        return found if found is not None else self.builtin[name]

    def __iter__(self) -> Iterator[str]:
        return iter([*self.builtin, *self._listed])

    def __len__(self) -> int:
        return len(self.builtin) + len(self._listed)


def expand(names: Iterable[str], tools: Mapping[str, Any]) -> list[str]:
    """`Catalogue.expand` for any mapping of tools (one without MCP servers has no wildcards)."""
    return tools.expand(names) if isinstance(tools, Catalogue) else list(names)
