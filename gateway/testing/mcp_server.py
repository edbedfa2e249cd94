"""An MCP server built with the `mcp` SDK's own `MCPServer`, for tests: on loopback over
streamable HTTP (`McpTestServer`, in a thread) or as a subprocess over stdio
(`python -m gateway.testing.mcp_server JOURNAL`).

Tools: `add_comment` and `publish` (side effects, no hints), `set_label` (idempotent),
`lookup` (read-only),
`fails` (the tool reports an error), `slow` (sleeps), `huge` (a result of `size` bytes),
`chart` (an image). Every call is appended to the journal file (one JSON line each), so a test
counts side effects across processes. A tool named in `JOURNAL.hidden` (one per line) is not
offered: the way to change the tool list.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ImageContent, ToolAnnotations
from pydantic import Field

# A 1 by 1 PNG, the image `chart` returns.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def build(journal: Path, hidden: set[str] | None = None) -> MCPServer:
    """The test server, appending each call to `journal`, without the tools in `hidden` (or
    those listed in the file `JOURNAL.hidden`)."""
    server = MCPServer("gateway-test")

    def note(tool: str, **arguments: Any) -> None:
        with journal.open("a") as out:
            out.write(json.dumps({"tool": tool, **arguments}) + "\n")

    @server.tool()
    def add_comment(
        issue: Annotated[int, Field(ge=1, description="Issue number")],
        body: Annotated[str, Field(max_length=2000)],
    ) -> str:
        """Add a comment to an issue."""
        note("add_comment", issue=issue, body=body)
        return f"comment added to #{issue}"

    @server.tool(annotations=ToolAnnotations(idempotentHint=True, destructiveHint=False))
    async def set_label(issue: int, label: str, seconds: float = 0) -> str:
        """Set an issue's label (setting it twice changes nothing); answers after `seconds`."""
        note("set_label", issue=issue, label=label)
        await asyncio.sleep(seconds)
        return f"#{issue} labelled {label}"

    @server.tool()
    async def publish(text: str, seconds: float = 0) -> str:
        """Publish a note (side effects, no hints); answers after `seconds`."""
        note("publish", text=text)
        await asyncio.sleep(seconds)
        return "published"

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def lookup(issue: int) -> dict[str, Any]:
        """Read an issue."""
        note("lookup", issue=issue)
        return {"issue": issue, "title": f"Issue {issue}", "state": "open"}

    @server.tool()
    def fails(reason: str) -> str:
        """Always fails."""
        note("fails", reason=reason)
        raise ValueError(reason)

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    async def slow(seconds: float) -> str:
        """Answers after `seconds`."""
        note("slow", seconds=seconds)
        await asyncio.sleep(seconds)
        return "done"

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def huge(size: int) -> str:
        """A result of `size` bytes."""
        note("huge", size=size)
        return "x" * size

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def chart() -> ImageContent:
        """A chart, as a PNG image."""
        note("chart")
        return ImageContent(
            type="image", data=base64.b64encode(PNG).decode(), mime_type="image/png"
        )

    listed = journal.with_suffix(".hidden")
    for name in (hidden or set()) | set(listed.read_text().split() if listed.exists() else ()):
        server.remove_tool(name)
    return server


def calls(journal: Path, tool: str | None = None) -> list[dict[str, Any]]:
    """The calls the server received, oldest first (only `tool`'s, if given)."""
    if not journal.exists():
        return []
    found = [json.loads(line) for line in journal.read_text().splitlines() if line]
    return [c for c in found if tool is None or c["tool"] == tool]


class McpTestServer:
    """The test server over streamable HTTP on loopback; `hide(name)` drops a tool."""

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self.hidden: set[str] = set()
        self.server = build(journal)
        self.url = ""
        self.port = 0

    def hide(self, name: str) -> None:
        self.hidden.add(name)
        self.server.remove_tool(name)

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        return calls(self.journal, tool)

    @contextmanager
    def serving(self) -> Iterator[McpTestServer]:
        """Serve until the block ends; served again, it comes back on the same port."""
        from gateway.testing.server import serve_in_thread

        # A fresh SDK server each time: its session manager runs once per instance.
        self.server = build(self.journal, self.hidden)
        app = self.server.streamable_http_app(stateless_http=True, json_response=True)
        with serve_in_thread(app, port=self.port) as url:
            self.port = int(url.rsplit(":", 1)[1])
            self.url = f"{url}/mcp"
            yield self


if __name__ == "__main__":
    build(Path(sys.argv[1])).run("stdio")
