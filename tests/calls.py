"""Calling one tool as the worker does, with its family's block from `handlers:` as a dict.

Each call gets a toolbox of its own: the family's client is opened for it and closed after.
"""

from __future__ import annotations

from typing import Any

from gateway.tools import TOOLS, Toolbox


async def call_tool(
    name: str,
    settings: dict[str, Any],
    arguments: dict[str, Any],
    *,
    key: str = "k",
    **context: Any,
) -> Any:
    """`TOOLS[name]` called once with `arguments`, as the step whose idempotency key is `key`."""
    async with Toolbox({name.partition(".")[0]: settings}) as toolbox:
        return await toolbox.call(name, arguments, key=key, **context)


async def recover_tool(
    name: str, settings: dict[str, Any], arguments: dict[str, Any], *, key: str
) -> Any:
    """What the tool's `recover` check finds for the step `key` (after a lost response)."""
    tool = TOOLS[name]
    assert tool.recover_function is not None
    async with Toolbox({tool.family: settings}) as toolbox:
        context = toolbox.context(tool, key=key)
        return await tool.recover_function(context, tool.validate(arguments))
