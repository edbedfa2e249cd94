"""The tools as one gateway runs them: each family's settings validated once, its client opened
once (on first use, by the first call that needs it) and closed when the gateway stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.errors import ConfigError
from gateway.tools.family import FAMILIES, TOOLS, NoSettings
from gateway.tools.tool import Tool, ToolContext, describe_error


class Toolbox:
    """The families' settings from `handlers:` and their open clients, for one gateway.

    `context(tool, key=...)` is what a call is given; `definition(tool)` what a model is shown.
    Use it as an async context manager, or call `aclose()`: it closes every client opened.
    """

    def __init__(
        self,
        handlers: Mapping[str, Mapping[str, Any]] | None = None,
        tools: Mapping[str, Tool] = TOOLS,
    ) -> None:
        self.tools = tools
        self._blocks = dict(handlers or {})
        self._settings: dict[str, BaseModel] = {}
        self._clients: dict[str, Any] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._stack = AsyncExitStack()
        # Every configured block now, so a bad one stops start-up rather than a call; a
        # config loaded by `gateway.config.load` has passed this already, and unknown families
        # were reported there.
        problems = []
        for family in self._blocks:
            if family in FAMILIES:
                try:
                    self.settings(family)
                except ConfigError as exc:
                    problems += exc.problems
        if problems:
            raise ConfigError(problems)

    def settings(self, family: str) -> BaseModel:
        """The family's validated settings (`ConfigError` if its block is invalid, which
        `gateway check` reports first)."""
        if family not in self._settings:
            try:
                # A tool made outside any family (a test's own `Tool`) has no settings.
                model = found.settings if (found := FAMILIES.get(family)) else NoSettings
                self._settings[family] = model.model_validate(dict(self._blocks.get(family) or {}))
            except ValidationError as exc:
                raise ConfigError([f"handlers.{family}: {describe_error(exc)}"]) from None
        return self._settings[family]

    def context(
        self,
        tool: Tool,
        *,
        key: str,
        run_id: int | None = None,
        files: dict[str, bytes] | None = None,
        store: Any = None,
    ) -> ToolContext[Any, Any]:
        """What `tool` is called with for the step whose idempotency key is `key`."""
        family = tool.family

        async def connect() -> Any:
            return await self.client(family)

        return ToolContext(
            key=key,
            settings=self.settings(family),
            connect=connect,
            run_id=run_id,
            files=files if files is not None else {},
            store=store,
        )

    async def call(self, name: str, arguments: dict[str, Any], *, key: str, **context: Any) -> Any:
        """Call the tool `name` once, as a step with idempotency key `key` (for the CLI and
        tests; the worker journals around `Tool.call` itself)."""
        tool = self.tools[name]
        return await tool.call(self.context(tool, key=key, **context), arguments)

    def definition(self, tool: Tool) -> dict[str, Any]:
        """The tool as a model sees it, its description built from this gateway's settings."""
        return tool.definition(self.settings(tool.family))

    async def client(self, family: str) -> Any:
        """The family's client: opened by the first caller, shared by every later one."""
        if family in self._clients:
            return self._clients[family]
        found = FAMILIES.get(family)
        if found is None or found.opener is None:
            return None
        async with self._opening.setdefault(family, asyncio.Lock()):
            if family not in self._clients:
                # A failed opening is not kept: the next call tries again.
                opened = found.opener(self.settings(family))
                self._clients[family] = await self._stack.enter_async_context(opened)
        return self._clients[family]

    async def aclose(self) -> None:
        """Close every client opened, last opened first."""
        self._clients.clear()
        await self._stack.aclose()

    async def __aenter__(self) -> Toolbox:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Toolbox(families={sorted(self._settings)}, open={sorted(self._clients)})"
