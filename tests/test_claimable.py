"""When the worker claims: after something may have made a run claimable, not after every run
that ends (a claim commit per finished batch cost the worker more than its runs)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway import worker as worker_module
from gateway.runs.claimable import Claimable
from gateway.store import NewRun, Store
from gateway.tools import ToolError
from gateway.worker import Worker
from tests.fixtures import requires_fixtures
from tests.recording import CALLS, FAILURES
from tests.test_store import new_event
from tests.test_worker import worker_on

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]

RULE = """
- name: record
  on: {source: shop, event: orders/create}
  actions:
    - test.record: {label: "{{ event.delivery_id }}"}
"""
KEYED_RULE = """
- name: record
  on: {source: shop, event: orders/create}
  order_by: "{{ payload.key }}"
  actions:
    - test.record: {label: "{{ event.delivery_id }}", delay_ms: 5}
"""


def test_a_claim_that_came_back_short_is_not_repeated_until_something_changes() -> None:
    claimable = Claimable(poll=60)
    mark = claimable.claiming()
    claimable.claimed(mark, asked=4, taken=2)
    assert not claimable.maybe
    claimable.changed()
    assert claimable.maybe


def test_a_change_during_a_claim_is_not_settled_by_it() -> None:
    claimable = Claimable(poll=60)
    mark = claimable.claiming()
    claimable.changed()  # runs queued while the claim was in flight: it may not have seen them
    claimable.claimed(mark, asked=4, taken=0)
    assert claimable.maybe


def test_a_claim_that_filled_every_slot_leaves_more_to_claim() -> None:
    claimable = Claimable(poll=60)
    mark = claimable.claiming()
    claimable.claimed(mark, asked=4, taken=4)
    assert claimable.maybe


def test_the_poll_claims_again_even_when_nothing_announced_a_change() -> None:
    claimable = Claimable(poll=0.05)
    claimable.claimed(claimable.claiming(), asked=4, taken=0)
    assert not claimable.maybe
    time.sleep(0.06)  # a lease that ran out, a retry another replica scheduled: no wake-up
    assert claimable.maybe


@pytest.fixture(autouse=True)
def no_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """No fallback poll within a test: what is claimed was claimed for a reason."""
    monkeypatch.setattr(worker_module, "FALLBACK_POLL_SECONDS", 60.0)


async def succeeded(store: Store, count: int) -> None:
    for _ in range(1000):
        if await store.runs.count("succeeded") >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} runs did not succeed")


def count_claims(worker: Worker) -> list[int]:
    claims: list[int] = []
    claim = worker.store.runs.claim

    async def counted(*args: Any) -> Any:
        claims.append(1)
        return await claim(*args)

    worker.store.runs.claim = counted  # type: ignore[method-assign]
    return claims


async def test_a_stream_of_events_is_claimed_by_the_routing_commits_alone(
    tmp_path: Path,
) -> None:
    (tmp_path / "rules.yaml").write_text(RULE)
    async with worker_on(tmp_path) as (store, worker):
        store.events.on_commit(worker.notify_events)
        claims = count_claims(worker)
        await worker.start()
        for n in range(10):
            await store.events.add(new_event(f"stream-{n}"))
            await succeeded(store, n + 1)
        await worker.stop()
    assert len(CALLS) == 10
    # At most the claim at start: each event's routing commit claimed its run, and a run that
    # finished made nothing else claimable (it had no ordering key, no retry).
    assert len(claims) <= 1


async def test_runs_another_process_queued_are_claimed_when_it_says_so(
    tmp_path: Path,
) -> None:
    (tmp_path / "rules.yaml").write_text(RULE)
    async with worker_on(tmp_path) as (store, worker):
        await worker.start()
        await asyncio.sleep(0.05)  # the first claim came back empty: settled
        stored = await store.events.add(new_event("from-cli"))
        await store.runs.add([NewRun(event_id=stored.id, rule="record", kind="actions")])
        worker.notify_runs()  # a `gateway replay`'s wake-up
        await succeeded(store, 1)
        await worker.stop()
    assert [c["label"] for c in CALLS] == ["from-cli"]


async def test_the_next_run_of_a_key_and_a_retry_are_claimed_without_a_wake_up(
    tmp_path: Path,
) -> None:
    (tmp_path / "rules.yaml").write_text(KEYED_RULE)
    FAILURES["keyed-0"] = [ToolError("busy", retry_after=0.05)]
    async with worker_on(tmp_path) as (store, worker):
        store.events.on_commit(worker.notify_events)
        await worker.start()
        for n in range(3):
            await store.events.add(new_event(f"keyed-{n}", body=b'{"key": "alice"}'))
        await succeeded(store, 3)
        await worker.stop()
    # The first failed once and was retried when due; the others waited for it, in order.
    assert [c["label"] for c in CALLS] == ["keyed-0", "keyed-0", "keyed-1", "keyed-2"]
