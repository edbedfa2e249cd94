"""An MCP server's tool as a gateway `Tool`: its schema is the server's, its arguments are
validated against it before the call, and its result is capped before the journal sees it.

Side effects come from the tool's annotations (`readOnlyHint`, `idempotentHint`), unless the
server's `tools:` block in gateway.yaml overrides them; a tool with no hints has side effects
and is not idempotent, so a call whose outcome is unknown is never made again.
"""

from __future__ import annotations

import base64
import copy
import json
import mimetypes
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import mcp_types
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import InitErrorDetails, PydanticCustomError

from gateway.errors import ServerUnreachable
from gateway.mcp.connection import McpServer
from gateway.tools import PermanentToolError, Tool, ToolContext


@dataclass
class McpTool(Tool):
    """`SERVER.TOOL`: calls `remote` on `server`."""

    server: McpServer | None = None
    remote: str = ""
    input_schema: dict[str, Any] = field(default_factory=dict)
    idempotent: bool = False

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments, checked against the server's input schema (pydantic's
        `ValidationError` when they do not fit, as for a built-in tool)."""
        validator = jsonschema.Draft202012Validator(self.input_schema)
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
        if errors:
            details: list[InitErrorDetails] = [
                {
                    "type": PydanticCustomError("mcp_schema", "{message}", {"message": e.message}),
                    "loc": tuple(e.absolute_path),
                    "input": e.instance,
                }
                for e in errors
            ]
            raise ValidationError.from_exception_data(self.name, details)
        return copy.deepcopy(arguments)

    def problems(self, arguments: Any) -> dict[str, str]:
        return {}  # checked against the live schema by `gateway check`, not offline

    async def call(self, context: ToolContext[Any, Any], arguments: dict[str, Any]) -> Any:
        assert self.server is not None
        checked = self.validate(arguments)
        try:
            result = await self.server.call(self.remote, checked, key=context.key)
        except ServerUnreachable:
            self.server.not_sent.add(context.key)
            raise
        return content(self.name, result, self.server.settings.max_result_bytes, context.files)

    def _build_schema(self) -> dict[str, Any]:
        return {k: v for k, v in self.input_schema.items() if k not in ("title", "$schema")}

    def definition(self, settings: BaseModel | None = None) -> dict[str, Any]:
        # The server's schema is not ours to make strict: sent as is, validated here on
        # every call either way.
        return {**super().definition(settings), "strict": False}


def make_tool(server: McpServer, listed: mcp_types.Tool) -> McpTool:
    """The gateway tool for one tool of a server's listing."""
    hints = listed.annotations or mcp_types.ToolAnnotations()
    override = server.settings.tools.get(listed.name)
    read_only = bool(hints.read_only_hint)
    side_effects = not read_only
    idempotent = read_only or bool(hints.idempotent_hint)
    if override is not None and override.side_effects is not None:
        side_effects = override.side_effects
    if override is not None and override.idempotent is not None:
        idempotent = override.idempotent
    name = f"{server.name}.{listed.name}"
    made = McpTool(
        name=name,
        function=_not_called,
        description=listed.description or listed.title or name,
        arguments=_ANY_ARGUMENTS,
        side_effects=side_effects,
        server=server,
        remote=listed.name,
        input_schema=dict(listed.input_schema),
        idempotent=idempotent,
    )

    async def recover(context: ToolContext[Any, Any], arguments: dict[str, Any]) -> Any:
        # Called before a repeat of a call whose outcome is unknown: only a call known not
        # sent, or a tool safe to repeat, is made again.
        if context.key in server.not_sent or idempotent:
            server.not_sent.discard(context.key)
            return None
        raise PermanentToolError(
            f"{name}: an earlier attempt may have run (its outcome is unknown) and the tool is "
            "not idempotent, so it is not called again; check the remote system"
        )

    made.recover_function = recover
    return made


def content(
    name: str, result: mcp_types.CallToolResult, limit: int, files: dict[str, bytes]
) -> dict[str, Any]:
    """A tool result as the journal keeps it: text, JSON and resources, at most `limit` bytes;
    images, audio and binary resources become run files (named in `files`)."""
    texts: list[str] = []
    resources: list[dict[str, Any]] = []
    made: list[str] = []
    for index, block in enumerate(result.content):
        if isinstance(block, mcp_types.TextContent):
            texts.append(block.text)
        elif isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
            made.append(_file(files, name, index, block.mime_type, block.data))
        elif isinstance(block, mcp_types.EmbeddedResource):
            inner = block.resource
            if isinstance(inner, mcp_types.TextResourceContents):
                resources.append({"uri": str(inner.uri), "text": inner.text})
            else:
                mime = inner.mime_type or "application/octet-stream"
                made.append(_file(files, name, index, mime, inner.blob))
        elif isinstance(block, mcp_types.ResourceLink):
            resources.append({"uri": str(block.uri), "name": block.name})
    text = "\n".join(texts)
    if result.is_error:
        raise PermanentToolError(f"{name} failed: {_cut(text, limit)[0]}")
    out: dict[str, Any] = {"text": text}
    structured = result.structured_content
    if structured is not None and not _same(text, structured):
        out["structured"] = structured
    if resources:
        out["resources"] = resources
    if made:
        out["files"] = made
    size = len(json.dumps(out, default=str).encode())
    if size <= limit:
        return out
    # Over the cap: the whole result as text, cut; files stay whole (they are not sent).
    whole = json.dumps({k: v for k, v in out.items() if k != "files"}, default=str)
    cut, _ = _cut(whole, limit - 200)
    return {"text": cut, "truncated": True, "bytes": size, **({"files": made} if made else {})}


def _same(text: str, structured: dict[str, Any]) -> bool:
    """Whether the text blocks only repeat the structured result (as the spec asks servers to
    do): then the journal keeps it once, as text."""
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = text
    return parsed == structured or structured == {"result": parsed}


def _cut(text: str, limit: int) -> tuple[str, bool]:
    raw = text.encode()
    if len(raw) <= limit:
        return text, False
    return raw[:limit].decode(errors="ignore"), True


def _file(files: dict[str, bytes], tool: str, index: int, mime: str, data: str) -> str:
    extension = mimetypes.guess_extension(mime) or ".bin"
    file_name = f"{tool}-{index}{extension}"
    files[file_name] = base64.b64decode(data)
    return file_name


async def _not_called(context: ToolContext[Any, Any], **arguments: Any) -> Any:
    raise AssertionError("an MCP tool is called through McpTool.call")


_ANY_ARGUMENTS = create_model("McpArguments", __config__=ConfigDict(extra="allow"))
