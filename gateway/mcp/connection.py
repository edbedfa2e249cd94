"""One configured MCP server as the gateway talks to it: its tool list (cached for `list_ttl`)
and calls, each over a connection of its own, so a server that restarts is simply found again.

Errors say whether the call was sent: `ServerUnreachable` (it was not; trying again is safe)
or another `ToolError` (it may have been; only an idempotent tool is called again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, cast

import httpx2
import mcp_types
import structlog
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from gateway.errors import ServerUnreachable
from gateway.mcp.settings import McpServerConfig
from gateway.tools import PermanentToolError, ToolError

log = structlog.get_logger(__name__)

# Pages of `tools/list` read at most: a server that pages forever cannot hang a listing.
MAX_LIST_PAGES = 100


class McpServer:
    """A configured server: `tools()` lists what it offers, `call()` calls one of them."""

    def __init__(
        self,
        name: str,
        settings: McpServerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.settings = settings
        self._clock = clock
        self._listed: dict[str, mcp_types.Tool] | None = None
        self._listed_at = 0.0
        self._ttl = settings.list_ttl
        self._listing = asyncio.Lock()
        # What changed between two listings (a tool vanished, a schema changed), each logged.
        self.changed: list[str] = []
        # Idempotency keys of calls that failed before being sent: safe to make again.
        self.not_sent: set[str] = set()

    @property
    def listing(self) -> dict[str, mcp_types.Tool] | None:
        """The last tool list read from the server (None before the first)."""
        return self._listed

    async def tools(self, *, refresh: bool = False) -> dict[str, mcp_types.Tool]:
        """The server's tools by their own names; listed again once `list_ttl` has passed."""
        async with self._listing:
            fresh = self._clock() - self._listed_at < self._ttl
            if self._listed is not None and fresh and not refresh:
                return self._listed
            ttl = self.settings.list_ttl
            async with self._session() as client:
                listed: dict[str, mcp_types.Tool] = {}
                cursor: str | None = None
                for _ in range(MAX_LIST_PAGES):
                    try:
                        page = await client.list_tools(cursor=cursor, cache_mode="refresh")
                    except MCPError as exc:
                        raise ToolError(f"MCP server {self.name!r}: tools/list: {exc}") from None
                    listed.update((tool.name, tool) for tool in page.tools)
                    if page.ttl_ms is not None:  # the server's own TTL, if shorter
                        ttl = min(ttl, page.ttl_ms / 1000)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
            self._notice_changes(listed)
            self._listed, self._ttl = listed, ttl
            self._listed_at = self._clock()
            return listed

    async def call(
        self, tool: str, arguments: dict[str, Any], *, key: str
    ) -> mcp_types.CallToolResult:
        """Call `tool` once; the step's idempotency key travels in `_meta` for servers that
        can deduplicate on it."""
        async with self._session() as client:
            try:
                return await client.call_tool(
                    tool,
                    arguments,
                    read_timeout_seconds=self.settings.timeout,
                    meta=cast(mcp_types.RequestParamsMeta, {"gateway/idempotency-key": key}),
                )
            except MCPError as exc:
                if exc.code == mcp_types.INVALID_PARAMS:
                    raise PermanentToolError(f"{self.name}.{tool}: {exc.error.message}") from None
                message = exc.error.message
                raise ToolError(f"{self.name}.{tool}: outcome unknown: {message}") from None

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[Client]:
        """A connection for one listing or one call, within the server's `timeout`."""
        stack = AsyncExitStack()
        try:
            async with asyncio.timeout(self.settings.timeout):
                try:
                    client = await stack.enter_async_context(self._client(stack))
                except (Exception, ExceptionGroup) as exc:
                    await _quietly(stack)
                    raise ServerUnreachable(self.name, _describe(exc)) from None
                try:
                    yield client
                except (ToolError, GeneratorExit):
                    raise
                except (Exception, ExceptionGroup) as exc:
                    raise ToolError(
                        f"MCP server {self.name!r}: outcome unknown: {_describe(exc)}"
                    ) from None
                finally:
                    await _quietly(stack)
        except TimeoutError:
            raise ToolError(
                f"MCP server {self.name!r}: no answer within {self.settings.timeout:g} s "
                "(outcome unknown)"
            ) from None

    def _client(self, stack: AsyncExitStack) -> Client:
        settings = self.settings
        if settings.url is not None:
            http = httpx2.AsyncClient(
                headers=settings.headers,
                timeout=httpx2.Timeout(settings.timeout),
                auth=self._oauth(),
            )
            stack.push_async_callback(http.aclose)
            transport = streamable_http_client(settings.url, http_client=http)
            return Client(transport, read_timeout_seconds=settings.timeout, cache=None)
        assert settings.command is not None
        parameters = StdioServerParameters(
            command=settings.command, args=settings.args, env=settings.env or None
        )
        return Client(parameters, read_timeout_seconds=settings.timeout, cache=None)

    def _oauth(self) -> httpx2.Auth | None:
        oauth = self.settings.oauth
        if oauth is None or self.settings.url is None:
            return None
        from mcp.client.auth.extensions.client_credentials import (
            ClientCredentialsOAuthProvider,
        )

        return ClientCredentialsOAuthProvider(
            server_url=self.settings.url,
            storage=_TokenMemory(),
            client_id=oauth.client_id,
            client_secret=oauth.client_secret,
            scope=oauth.scope,
        )

    def _notice_changes(self, listed: dict[str, mcp_types.Tool]) -> None:
        if self._listed is None:
            return
        found = []
        for name, before in self._listed.items():
            now = listed.get(name)
            if now is None:
                found.append(f"{self.name}.{name} vanished")
            elif now.input_schema != before.input_schema:
                found.append(f"{self.name}.{name} changed its input schema")
        for change in found:
            log.warning("mcp.tool_list_changed", server=self.name, change=change)
        self.changed += found

    def __repr__(self) -> str:
        return f"McpServer({self.name!r})"


class _TokenMemory:
    """Where the OAuth provider keeps its token: in memory, for this process."""

    def __init__(self) -> None:
        self.tokens: Any = None
        self.client_info: Any = None

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info


async def _quietly(stack: AsyncExitStack) -> None:
    # Closing a connection whose server vanished fails too; the outcome is already decided.
    try:
        await stack.aclose()
    except (Exception, ExceptionGroup) as exc:
        log.debug("mcp.close_failed", error=_describe(exc))


def _describe(error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return f"{type(error).__name__}: {error}"
