"""`log.record`: write a structured log line. No side effect outside the gateway.

Useful for trying a rule, and as the no-op action of the drain benchmark.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from pydantic import Field

from gateway.tools import ToolContext, tool

log = structlog.get_logger("gateway.handlers.log")


@tool("log.record", side_effects=False)
async def record(
    context: ToolContext,
    message: Annotated[str, Field(description="What to log")],
    fields: Annotated[dict[str, str] | None, Field(description="Extra key/value pairs")] = None,
) -> dict[str, Any]:
    """Write a message (and optional fields) to the gateway's structured log."""
    log.info("rule.log", message=message, run_id=context.run_id, **(fields or {}))
    return {"logged": message}
