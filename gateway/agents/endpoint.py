"""`/mcp`: the gateway as an MCP server (streamable HTTP, stateless), for agents that hold a
token from `mcp_server.clients`. A token selects its client, and the client's scopes select
the server it talks to: one per set of scopes, holding only those scopes' tools.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import structlog
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.agents.operator import CLIENT, build
from gateway.mcp.settings import McpEndpointConfig

log = structlog.get_logger(__name__)

PATH = "/mcp"


class McpEndpoint:
    """The ASGI app at `/mcp`; `start()` and `stop()` from the gateway's lifespan."""

    def __init__(self, settings: McpEndpointConfig, state: Callable[[], Any]) -> None:
        self.settings = settings
        self._servers: dict[frozenset[str], MCPServer] = {}
        self._apps: dict[frozenset[str], ASGIApp] = {}
        for client in settings.clients.values():
            scopes = frozenset(client.scopes)
            if scopes not in self._servers:
                server = build(scopes, state)
                self._servers[scopes] = server
                # The bearer token is the defence here, not the Host header: a reverse proxy
                # may present any name.
                security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
                self._apps[scopes] = server.streamable_http_app(
                    streamable_http_path=PATH,
                    stateless_http=True,
                    json_response=True,
                    transport_security=security,
                )
        self._stack = AsyncExitStack()

    async def start(self) -> None:
        for server in self._servers.values():
            await self._stack.enter_async_context(server.session_manager.run())

    async def stop(self) -> None:
        await self._stack.aclose()

    def client(self, authorization: str | None) -> str | None:
        """The client whose token the `Authorization: Bearer` header carries, if any."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        found = None
        for name, client in self.settings.clients.items():
            # Every token compared, in constant time: the timing says nothing of which matched.
            if hmac.compare_digest(client.token.encode(), token.strip().encode()):
                found = name
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        name = self.client(headers.get("authorization"))
        if name is None:
            log.warning("mcp.refused", reason="no valid bearer token")
            refusal = JSONResponse(
                {"error": "a valid bearer token from mcp_server.clients is required"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="gateway-mcp"'},
            )
            await refusal(scope, receive, send)
            return
        token = CLIENT.set(name)
        try:
            app = self._apps[frozenset(self.settings.clients[name].scopes)]
            await app(scope, receive, send)
        finally:
            CLIENT.reset(token)

    def routes(self) -> list[Route]:
        return [Route(PATH, self, methods=["GET", "POST", "DELETE"])]
