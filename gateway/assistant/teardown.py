"""The end of a run's hosted container: deleted through the containers API once the run has
ended, the deletion journaled as a step; and the sweep of deletions a crash left owed.

A container's id is never reused, so deleting it twice is harmless: a 404 means it is gone
already (deleted before a crash, or expired at OpenAI), and is recorded as such.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from gateway.backoff import backoff
from gateway.runs.journal import nonce
from gateway.store import Step, Store
from gateway.store.status import FINISHED, StepStatus

if TYPE_CHECKING:
    import openai

log = structlog.get_logger(__name__)

CONTAINER = "code_interpreter.container"
DELETE = "code_interpreter.delete"
# Tries of one deletion, in process, before it is recorded as failed.
DELETE_ATTEMPTS = 3
DELETE_BACKOFF_BASE = 0.5
DELETE_BACKOFF_MAX = 4.0
# The sweep looks at containers made this recently: an older one has expired at OpenAI (a run
# keeps one at most a day, `max_container_minutes`, and it expires after 20 idle minutes).
SWEEP_HORIZON = timedelta(days=2)
# ... of runs ended at least this long ago, so it never races the deletion at a run's end.
SWEEP_SETTLE = timedelta(seconds=60)
SWEEP_LIMIT = 200


async def delete_container(
    client: openai.AsyncOpenAI,
    store: Store,
    run_id: int,
    container_id: str,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> dict[str, Any] | None:
    """Delete `container_id` (of run `run_id`, which has ended) and journal it as a
    `code_interpreter.delete` step after the run's last: succeeded (deleted, or gone already),
    or failed with the reason once DELETE_ATTEMPTS are spent; the container then expires at
    OpenAI. Never raises for the API's answer: the run's outcome stands whatever happens here.
    The step recorded, or None if the journal had this deletion already."""
    import openai

    outcome: str | None = None
    error: str | None = None
    for attempt in range(DELETE_ATTEMPTS):
        try:
            await client.containers.delete(container_id)
            outcome = "deleted"
        except openai.NotFoundError:
            outcome = "already gone"
        except openai.APIError as exc:
            status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
            error = exc.message
            if (status is None or status == 429 or status >= 500) and attempt + 1 < DELETE_ATTEMPTS:
                log.warning("container.delete_retry", container=container_id, error=error)
                delay = backoff(attempt, base=DELETE_BACKOFF_BASE, ceiling=DELETE_BACKOFF_MAX)
                await sleep(delay)
                continue
        break
    journal = await store.steps.of_run(run_id)
    if any(s.tool == DELETE and s.arguments == {"container_id": container_id} for s in journal):
        return None  # recorded meanwhile (another replica's sweep): this one is the same news
    step = {
        "kind": "tool",
        "tool": DELETE,
        "arguments": {"container_id": container_id},
        "idempotency_key": f"{run_id}.{DELETE}.{nonce()}",
        "status": StepStatus.SUCCEEDED if outcome else StepStatus.FAILED,
        "result": {"container_id": container_id, "outcome": outcome} if outcome else None,
        "error": None
        if outcome
        else (
            f"code_interpreter: container {container_id} not deleted after {DELETE_ATTEMPTS} "
            f"tries ({error}); it expires at OpenAI after its idle minutes"
        ),
        "started_at": datetime.now(UTC),
    }
    if outcome is None:
        log.error("container.delete_failed", run_id=run_id, container=container_id, error=error)
    position = max((s.position for s in journal), default=0) + 1
    await store.steps.record(run_id, [(position, step)])
    return step


ClientOf = Callable[[Step], "openai.AsyncOpenAI | None"]
"""The client that made a container (from its `code_interpreter.container` step), if any."""


async def sweep(store: Store, client_of: ClientOf) -> int:
    """Delete the containers of ended runs that a crash (between a run's end and its
    container's deletion) left undeleted; how many it deleted or found gone. A container whose
    rule said `keep_container`, or whose client is unknown now, is left to expire."""
    now = datetime.now(UTC)
    try:
        owed = await store.steps.unclosed(
            CONTAINER,
            DELETE,
            since=now - SWEEP_HORIZON,
            ended_before=now - SWEEP_SETTLE,
            limit=SWEEP_LIMIT,
        )
    except Exception as exc:  # the store is away: a later sweep tries again
        log.error("container.sweep_failed", error=str(exc))
        return 0
    done = 0
    for made in owed:
        client = client_of(made)
        if made.arguments.get("keep") or client is None:
            continue
        try:
            run = await store.runs.get(made.run_id)
            if run is None or run.status not in FINISHED:
                continue  # an operator retried it since: it goes on with this container
            step = await delete_container(client, store, made.run_id, made.result["container_id"])
        except Exception as exc:  # the store: the next sweep tries again
            log.error("container.sweep_failed", run_id=made.run_id, error=str(exc))
            continue
        done += step is not None and step["status"] == StepStatus.SUCCEEDED
    if owed:
        log.info("container.swept", owed=len(owed), deleted=done)
    return done
