"""`log.record`: write a structured log line. No side effect outside the gateway.

Useful for trying a rule, and as the no-op action of the drain benchmark.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from pydantic import Field

from gateway.log import redact
from gateway.tools import Family, NoSettings, ToolContext

log = structlog.get_logger("gateway.handlers.log")


family = Family("log")
Context = ToolContext[NoSettings, None]


@family.tool("log.record", side_effects=False)
async def record(
    context: Context,
    message: Annotated[str, Field(description="What to log")],
    fields: Annotated[dict[str, str] | None, Field(description="Extra key/value pairs")] = None,
) -> dict[str, Any]:
    """Write a message (and optional fields) to the gateway's structured log."""
    # The fields come from payloads and models: nested under `fields`, a name such as `event`,
    # `run_id` or `timestamp` can neither break the call nor overwrite the line's own keys.
    # Redaction looks at top-level names only, so it is applied to the nested ones here.
    extra = dict(redact(None, "", dict(fields))) if fields else {}
    log.info("rule.log", message=message, run_id=context.run_id, fields=extra)
    return {"logged": message}
