"""The `mcp:` block of gateway.yaml: the MCP servers whose tools rules and assistants may call.

Each server is reached over streamable HTTP (`url`) or as a subprocess over stdio (`command`).
"""

from __future__ import annotations

import re
from collections.abc import Container
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Bytes of a tool's result (its text, JSON and resource parts together) kept in the journal
# and sent to the model; a longer result is cut there and marked `truncated`.
MAX_RESULT_BYTES = 64 * 1024
# Seconds one call (or one listing) may take, connection included; then it is an error.
CALL_TIMEOUT = 30.0
# Seconds a server's tool list is kept before it is listed again.
LIST_TTL = 300.0


class ToolOverride(BaseModel):
    """What config says of one tool, over what the server's annotations say."""

    model_config = ConfigDict(extra="forbid")

    side_effects: bool | None = None
    idempotent: bool | None = None


class OAuthClientCredentials(BaseModel):
    """OAuth 2 client credentials, for a server that requires them (RFC 6749 §4.4)."""

    model_config = ConfigDict(extra="forbid")

    client_id: str
    client_secret: str
    scope: str | None = None


class McpServerConfig(BaseModel):
    """One MCP server: `url` (+ `headers`, `oauth`) or `command` (+ `args`, `env`)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    oauth: OAuthClientCredentials | None = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(CALL_TIMEOUT, gt=0, le=600)
    list_ttl: float = Field(LIST_TTL, ge=0)
    max_result_bytes: int = Field(MAX_RESULT_BYTES, ge=256, le=16 * 1024 * 1024)
    tools: dict[str, ToolOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_transport(self) -> Self:
        if (self.url is None) == (self.command is None):
            raise ValueError("an MCP server has exactly one of `url` (HTTP) or `command` (stdio)")
        if self.url is None and (self.headers or self.oauth):
            raise ValueError("`headers` and `oauth` are for an HTTP server (`url`)")
        if self.command is None and (self.args or self.env):
            raise ValueError("`args` and `env` are for a stdio server (`command`)")
        return self


def server_name_problem(name: str, families: Container[str]) -> str | None:
    """Why `name` cannot name an MCP server (its tools are `NAME.TOOL`), or None."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return f"MCP server name {name!r} may only use letters, digits, _ and -"
    if name in families:
        return f"MCP server name {name!r} is already a tool family's name"
    return None


# What a client of the gateway's own `/mcp` may do (docs/mcp.md lists each scope's tools).
Scope = Literal["read", "operate", "approve"]
# Items one listing tool returns at most; a `before` cursor pages further.
MAX_PAGE = 50


class McpClient(BaseModel):
    """One client of `/mcp`: its bearer token and its scopes."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=16, description="at least 16 characters")
    scopes: list[Scope] = Field(min_length=1)


class McpEndpointConfig(BaseModel):
    """`mcp_server:` the gateway's own MCP endpoint at `/mcp`, off unless present."""

    model_config = ConfigDict(extra="forbid")

    clients: dict[str, McpClient] = Field(min_length=1)

    @model_validator(mode="after")
    def _tokens_unique(self) -> Self:
        tokens = [c.token for c in self.clients.values()]
        if len(set(tokens)) != len(tokens):
            raise ValueError("two MCP clients share a token: each client needs its own")
        return self
