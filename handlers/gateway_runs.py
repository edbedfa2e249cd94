"""`gateway.runs`: read the gateway's own runs (e.g. last week's dead ones) for a digest.

Reads the store the worker runs on; no side effect, so rules and assistants may call it freely.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from gateway.store.records import Run
from gateway.tools import Family, NoSettings, PermanentToolError, ToolContext

Status = Literal[
    "pending",
    "running",
    "waiting",
    "succeeded",
    "failed",
    "dead",
    "awaiting_approval",
    "cancelled",
]


family = Family("gateway")
Context = ToolContext[NoSettings, None]


@family.tool("gateway.runs", side_effects=False)
async def runs(
    context: Context,
    status: Annotated[Status, Field(description="Only runs in this status, e.g. dead")],
    since: Annotated[datetime, Field(description="Runs created at or after this instant")],
    until: Annotated[
        datetime | None, Field(description="Runs created before this instant (default: now)")
    ] = None,
    limit: Annotated[
        int, Field(ge=1, le=1000, description="At most this many, oldest first")
    ] = 100,
) -> dict[str, Any]:
    """List the gateway's own runs in a status created in [since, until), oldest first.

    Returns {"runs": [{id, event_id, rule, status, attempt, created_at, finished_at, error}],
    "count": n, "truncated": bool}.
    """
    store = context.store
    if store is None:
        raise PermanentToolError("gateway.runs needs the gateway's store (run it in the worker)")
    found = await store.runs.find(
        status=status,
        since=_utc(since),
        until=_utc(until) if until is not None else None,
        limit=limit + 1,
        oldest_first=True,
    )
    listed = [_summary(run) for run in found[:limit]]
    return {"runs": listed, "count": len(listed), "truncated": len(found) > limit}


def _summary(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "event_id": run.event_id,
        "rule": run.rule,
        "status": run.status,
        "attempt": run.attempt,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "error": run.error,
    }


def _utc(value: datetime) -> datetime:
    # The store keeps UTC; SQLite compares its text, so the bound value must be UTC too.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
