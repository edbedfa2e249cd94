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
LOG_RULE = """
- name: record
  on: {source: shop, event: orders/create}
  actions:
    - log.record: {message: "{{ event.delivery_id }}"}
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


def count_commits(store: Store) -> list[int]:
    """The size of each journal commit (group commit: many changes, one transaction)."""
    sizes: list[int] = []
    commit = store.journal._commit

    async def counted(batch: list[Any]) -> None:
        sizes.append(len(batch))
        await commit(batch)

    store.journal._commit = counted  # type: ignore[method-assign]
    return sizes


async def test_under_a_backlog_the_next_claim_joins_the_commit_of_the_runs_that_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A claim that filled every slot says runs are waiting. That must hold while no slot is
    # free (no claim was made then): the runs about to finish wake the claim, which goes into
    # their journal commit instead of a commit of its own after it (bench/sustain's worker
    # process lost a commit per batch of runs to this).
    (tmp_path / "rules.yaml").write_text(LOG_RULE)
    # The runs outlast the claim's linger, as 16 runs of a 7 KB order do in a worker process.
    monkeypatch.setattr(worker_module, "CLAIM_LINGER_SECONDS", 0.0)
    async with worker_on(tmp_path, concurrency=4) as (store, worker):
        for n in range(40):
            await store.events.add(new_event(f"backlog-{n}"))
        commits = count_commits(store)
        await worker.start()
        await succeeded(store, 40)
        await worker.stop()
    # log.record has no side effects: a run is one commit, of its step and its end. The 4
    # runs of a batch finish in one commit, with the claim of the next 4 in it (5 changes):
    # about 11 commits after the routing commit, which claimed the first 4. A claim of its
    # own after each batch was 20.
    assert len(commits) <= 40 // 4 + 4, str(commits)


async def test_runs_waiting_are_claimed_while_a_routing_scan_reads_its_page(
    tmp_path: Path,
) -> None:
    # The routing commit claims free slots, so the run loop leaves the claim to it, but only
    # while that commit is on its way: reading the page can take a while under a stream, and
    # the slots stayed empty meanwhile.
    (tmp_path / "rules.yaml").write_text(RULE)
    async with worker_on(tmp_path) as (store, worker):
        await worker.start()
        await asyncio.sleep(0.05)  # the first claim and scan came back empty
        reading, release = asyncio.Event(), asyncio.Event()
        pending = store.events.pending

        async def slow_pending(limit: int) -> Any:
            reading.set()
            await release.wait()
            return await pending(limit)

        store.events.pending = slow_pending  # type: ignore[method-assign,assignment]
        worker.notify_events()  # a scan begins, and its read hangs
        await asyncio.wait_for(reading.wait(), 5)
        stored = await store.events.add(new_event("waiting"))
        await store.runs.add([NewRun(event_id=stored.id, rule="record", kind="actions")])
        worker.notify_runs()
        await asyncio.wait_for(succeeded(store, 1), 5)
        release.set()
        await worker.stop()
    assert [c["label"] for c in CALLS] == ["waiting"]


async def test_a_backlog_a_routing_claim_emptied_does_not_keep_the_claim_loop_spinning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run loop's backlog mark said "claim again"; a routing commit's claim came back
    # short meanwhile (nothing left to claim), so the run loop made no claim. It must wait,
    # not go round without awaiting anything until the poll: the event loop froze that long.
    monkeypatch.setattr(worker_module, "FALLBACK_POLL_SECONDS", 2.0)
    (tmp_path / "rules.yaml").write_text(RULE)
    async with worker_on(tmp_path) as (_, worker):
        await worker.start()
        await asyncio.sleep(0.05)  # the first claim came back empty: settled
        worker._backlog = True
        worker._runs_ready.set()
        began = time.monotonic()
        await asyncio.sleep(0.01)
        frozen = time.monotonic() - began
        await worker.stop()
    assert frozen < 1.0, f"the event loop was held {frozen:.1f} s"
