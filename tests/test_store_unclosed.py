"""`steps.unclosed` on both backends: the containers of ended runs that no deletion followed,
which the container sweep deletes (gateway/assistant/teardown.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.store import RunStatus, Store
from tests.test_store import routed_runs

MADE, DELETED = "code_interpreter.container", "code_interpreter.delete"


def step(tool: str, container: str, status: str = "succeeded") -> dict[str, Any]:
    made = tool == MADE
    return {
        "kind": "tool",
        "tool": tool,
        "arguments": {"memory": "1g"} if made else {"container_id": container},
        "idempotency_key": f"{tool}-{container}",
        "status": status,
        "result": {"container_id": container},
    }


async def test_only_containers_of_ended_runs_with_no_later_deletion_are_unclosed(
    store: Store,
) -> None:
    ended, deleted, again, running, failed_to_make = await routed_runs(
        store, ["a", "b", "c", "d", "e"]
    )
    await store.steps.record(ended, [(1, step(MADE, "c1"))])
    await store.steps.record(deleted, [(1, step(MADE, "c2")), (2, step(DELETED, "c2"))])
    # Retried after its container was deleted: the new container is owed its deletion.
    await store.steps.record(
        again, [(1, step(MADE, "c3")), (2, step(DELETED, "c3")), (3, step(MADE, "c4"))]
    )
    await store.steps.record(running, [(1, step(MADE, "c5"))])
    await store.steps.record(failed_to_make, [(1, step(MADE, "c6", status="failed"))])
    for run_id in (ended, deleted, again, failed_to_make):
        await store.runs.finish(run_id, RunStatus.SUCCEEDED)
    now = datetime.now(UTC)

    owed = await store.steps.unclosed(
        MADE, DELETED, since=now - timedelta(hours=1), ended_before=now + timedelta(1), limit=10
    )
    settling = await store.steps.unclosed(
        MADE, DELETED, since=now - timedelta(hours=1), ended_before=now - timedelta(1), limit=10
    )
    older = await store.steps.unclosed(
        MADE, DELETED, since=now + timedelta(hours=1), ended_before=now + timedelta(1), limit=10
    )

    assert [(s.run_id, s.result["container_id"]) for s in owed] == [(ended, "c1"), (again, "c4")]
    assert settling == []  # the runs ended too recently: their own end deletes them
    assert older == []  # made before the horizon: expired at OpenAI long since
