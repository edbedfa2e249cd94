"""Test tools registered for rule and assistant tests: they record calls and fail on demand."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

from gateway.tools import TOOLS, ToolContext, tool

# Test tools: they record what they were asked, and fail on demand.
CALLS: list[dict[str, Any]] = []
FAILURES: dict[str, list[Exception]] = defaultdict(list)
RECOVERED: dict[str, Any] = {}

if "test.record" not in TOOLS:

    @tool("test.record")
    async def record(
        context: ToolContext, label: str, delay_ms: int = 0, order: int | None = None
    ) -> dict[str, Any]:
        """Record a call (a side effect the tests can count)."""
        call = {"label": label, "key": context.key, "start": time.monotonic()}
        CALLS.append(call)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if FAILURES[label]:
            raise FAILURES[label].pop(0)
        call["end"] = time.monotonic()
        return {"label": label, "order": order}

    @record.recover
    async def _recover(context: ToolContext, arguments: dict[str, Any]) -> Any:
        return RECOVERED.get(context.key)


def reset() -> None:
    """Forget every recorded call and planned failure."""
    CALLS.clear()
    FAILURES.clear()
    RECOVERED.clear()
