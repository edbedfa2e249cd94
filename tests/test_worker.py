"""The worker: stored events become runs by the rules; every action call is a journaled step."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway import cli
from gateway import worker as worker_module
from gateway.config import Config
from gateway.rules.loader import load as load_rules
from gateway.runs.in_hand import EventsInHand
from gateway.store import Store
from gateway.tools import TOOLS, PermanentToolError, ToolContext, ToolError
from gateway.worker import Worker
from tests.fixtures import requires_fixtures
from tests.live import live_gateway
from tests.recording import CALLS, FAILURES, RECOVERED
from tests.test_store import new_event

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]


ORDER_RULE = """
- name: big-order
  on: {source: shop, event: orders/create}
  when: "{{ payload.total_price | float > 100 }}"
  actions:
    - test.record: {label: "order {{ payload.name }}"}
      as: first
    - test.record: {label: "then {{ results.first.label }}"}
"""


def test_matching_event_runs_its_actions_in_order_and_journals_each_step(
    tmp_path: Path,
) -> None:
    with live_gateway(tmp_path, ORDER_RULE) as gw:
        gw.post_order("e1", total_price="250.00", name="#1001")
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    assert run.status == "succeeded"
    assert [c["label"] for c in CALLS] == ["order #1001", "then order #1001"]
    assert [(s.tool, s.status, s.arguments) for s in steps] == [
        ("test.record", "succeeded", {"label": "order #1001", "delay_ms": 0, "order": None}),
        ("test.record", "succeeded", {"label": "then order #1001", "delay_ms": 0, "order": None}),
    ]
    assert steps[0].idempotency_key != steps[1].idempotency_key


EVENT_ONLY_RULE = """
- name: event-only
  on: {source: shop, event: orders/create}
  actions:
    - test.record: {label: "{{ event.type }} {{ event.source }}"}
      when: "{{ event.source == 'shop' }}"
- name: reads-payload
  on: {source: shop, event: orders/create}
  actions:
    - test.record: {label: "{{ payload.name }}"}
"""


def test_actions_see_the_event_whether_or_not_their_rule_reads_the_payload(
    tmp_path: Path,
) -> None:
    # The first rule's runs skip parsing the body (no template of theirs names `payload`);
    # the second's parse it. Both render what they name.
    with live_gateway(tmp_path, EVENT_ONLY_RULE) as gw:
        gw.post_order("e1", name="#1002")
        runs = gw.finished_runs(2)

    assert [run.status for run in runs] == ["succeeded", "succeeded"]
    assert sorted(c["label"] for c in CALLS) == ["#1002", "orders/create shop"]


def test_event_whose_condition_is_false_starts_no_run_and_is_marked_unmatched(
    tmp_path: Path,
) -> None:
    with live_gateway(tmp_path, ORDER_RULE) as gw:
        event_id = gw.post_order("e1", total_price="5.00").json()["id"]
        event = gw.wait_for(lambda: (e := gw.event(event_id)).status != "pending" and e)

        assert event.status == "unmatched"
        assert gw.runs() == []


def test_failing_condition_template_fails_the_run_with_the_reason(tmp_path: Path) -> None:
    rules = ORDER_RULE.replace("payload.total_price", "payload.no_such_field.deeper")
    with live_gateway(tmp_path, rules) as gw:
        gw.post_order("e1")
        [run] = gw.finished_runs(1)

    assert run.status == "failed"
    assert "no_such_field" in (run.error or "")
    assert CALLS == []


def test_retryable_failure_is_retried_with_the_same_idempotency_key(tmp_path: Path) -> None:
    FAILURES["order #1"] = [ToolError("503 from remote"), ToolError("timeout", retry_after=0.05)]
    with live_gateway(tmp_path, ORDER_RULE) as gw:
        gw.post_order("e1", total_price="500", name="#1")
        [run] = gw.finished_runs(1)
        [first, second] = gw.steps(run.id)

    assert run.status == "succeeded"
    assert run.attempt == 3
    assert first.attempt == 3
    assert len({c["key"] for c in CALLS if c["label"] == "order #1"}) == 1
    assert second.status == "succeeded"


def test_exhausted_retries_leave_the_run_dead_with_the_last_error(tmp_path: Path) -> None:
    FAILURES["order #1"] = [ToolError(f"down {n}") for n in range(5)]
    with live_gateway(tmp_path, ORDER_RULE, worker={"max_attempts": 3}) as gw:
        gw.post_order("e1", total_price="500", name="#1")
        [run] = gw.finished_runs(1)
        [step] = gw.steps(run.id)

    assert run.status == "dead"
    assert "down 2" in (run.error or "")
    assert step.status == "error"
    assert len(CALLS) == 3


def test_permanent_failure_fails_the_run_at_once(tmp_path: Path) -> None:
    FAILURES["order #1"] = [PermanentToolError("project does not exist")]
    with live_gateway(tmp_path, ORDER_RULE) as gw:
        gw.post_order("e1", total_price="500", name="#1")
        [run] = gw.finished_runs(1)

    assert run.status == "failed"
    assert run.attempt == 1
    assert "project does not exist" in (run.error or "")


def test_unknown_outcome_is_resolved_by_the_tool_check_not_by_calling_again(
    tmp_path: Path,
) -> None:
    # The first call times out after the remote acted: its outcome is unknown. The tool's
    # recover check finds the side effect, so the retry records it instead of acting again.
    def acted_then_lost() -> Exception:
        RECOVERED[CALLS[-1]["key"]] = {"label": "order #1", "recovered": True}
        return ToolError("response lost")

    class Lost(ToolError):
        def __init__(self) -> None:
            super().__init__("response lost")

    FAILURES["order #1"] = [Lost()]
    original = TOOLS["test.record"].function

    async def wrapped(context: ToolContext, **arguments: Any) -> Any:
        try:
            return await original(context, **arguments)
        except Lost:
            raise acted_then_lost() from None

    TOOLS["test.record"].function = wrapped
    try:
        with live_gateway(tmp_path, ORDER_RULE) as gw:
            gw.post_order("e1", total_price="500", name="#1")
            [run] = gw.finished_runs(1)
            [first, _] = gw.steps(run.id)
    finally:
        TOOLS["test.record"].function = original

    assert run.status == "succeeded"
    assert first.result == {"label": "order #1", "recovered": True}
    assert [c["label"] for c in CALLS] == ["order #1", "then order #1"]


ORDERED_RULE = """
- name: per-customer
  on: {source: shop, event: orders/create}
  order_by: "{{ payload.customer_key }}"
  actions:
    - test.record: {label: "{{ payload.customer_key }}", order: "{{ payload.seq }}", delay_ms: 5}
"""


def test_runs_with_one_ordering_key_run_one_at_a_time_in_arrival_order(tmp_path: Path) -> None:
    with live_gateway(tmp_path, ORDERED_RULE, worker={"concurrency": 16}) as gw:
        for seq in range(50):
            gw.post_order(f"same-{seq}", customer_key="alice", seq=seq)
        gw.finished_runs(50, timeout=60)

    alice = [c for c in CALLS if c["label"] == "alice"]
    assert len(alice) == 50
    for earlier, later in itertools.pairwise(alice):
        assert earlier["end"] <= later["start"]
    steps_order = [c["key"] for c in alice]
    assert steps_order == sorted(steps_order, key=lambda k: int(k.split(".")[0]))


def test_runs_with_different_ordering_keys_overlap(tmp_path: Path) -> None:
    rules = ORDERED_RULE.replace("delay_ms: 5", "delay_ms: 200")
    with live_gateway(tmp_path, rules, worker={"concurrency": 8}) as gw:
        for n in range(4):
            gw.post_order(f"key-{n}", customer_key=f"customer-{n}", seq=n)
        gw.finished_runs(4)

    starts = sorted(c["start"] for c in CALLS)
    ends = sorted(c["end"] for c in CALLS)
    assert starts[-1] < ends[0], "all four should have been running at the same time"


def test_no_more_runs_run_at_once_than_the_concurrency_allows(tmp_path: Path) -> None:
    # Routing claims the runs it creates and the run loop claims too: both share the slots.
    rules = ORDERED_RULE.replace('  order_by: "{{ payload.customer_key }}"\n', "")
    rules = rules.replace("delay_ms: 5", "delay_ms: 50")
    with live_gateway(tmp_path, rules, worker={"concurrency": 3}) as gw:
        for n in range(12):
            gw.post_order(f"slot-{n}", customer_key=f"customer-{n}", seq=n)
        gw.finished_runs(12, timeout=60)

    edges = sorted([(c["start"], 1) for c in CALLS] + [(c["end"], -1) for c in CALLS])
    running = [sum(step for _, step in edges[: n + 1]) for n in range(len(edges))]
    assert len(CALLS) == 12
    assert max(running) == 3, "three slots, all used, never more"


def test_replay_runs_the_rules_again_with_new_idempotency_keys(tmp_path: Path) -> None:
    with live_gateway(tmp_path, ORDER_RULE) as gw:
        event_id = gw.post_order("e1", total_price="500", name="#1").json()["id"]
        gw.finished_runs(1)
        replayed = CliRunner().invoke(
            cli.app, ["replay", str(event_id), "--config", str(tmp_path / "gateway.yaml")]
        )
        assert replayed.exit_code == 0, replayed.output
        runs = gw.finished_runs(2)

    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert len({c["key"] for c in CALLS}) == 4


def test_a_condition_naming_a_missing_field_fails_the_run_instead_of_skipping(
    tmp_path: Path,
) -> None:
    rules = ORDER_RULE.replace("payload.total_price | float > 100", "payload.missing")
    with live_gateway(tmp_path, rules) as gw:
        gw.post_order("e1")
        [run] = gw.finished_runs(1)

    assert run.status == "failed"
    assert "missing" in (run.error or "")


def test_an_argument_naming_a_missing_field_fails_the_run_with_the_reason(
    tmp_path: Path,
) -> None:
    rules = ORDER_RULE.replace('label: "order {{ payload.name }}"', 'label: "{{ payload.nope }}"')
    with live_gateway(tmp_path, rules) as gw:
        gw.post_order("e1", total_price="500")
        [run] = gw.finished_runs(1)

    assert run.status == "failed"
    assert run.attempt == 1
    assert "nope" in (run.error or "")
    assert CALLS == []


@asynccontextmanager
async def worker_on(folder: Path, concurrency: int = 16) -> AsyncIterator[tuple[Store, Worker]]:
    """A worker (not started) on a fresh SQLite store, with the rules in `folder`."""
    config = Config.model_validate(
        {
            "store": f"sqlite:///{folder / 'gateway.db'}",
            "rules": str(folder),
            "sources": {},
            "worker": {"concurrency": concurrency},
        }
    )
    store = Store(config.store_url)
    await store.open()
    try:
        yield store, Worker(store, load_rules(folder), config)
    finally:
        await store.close()


async def succeeded(store: Store, count: int, timeout: float = 5) -> None:
    """Wait until `count` runs succeeded (or `timeout` seconds passed)."""
    for _ in range(int(timeout / 0.01)):
        if await store.runs.count("succeeded") >= count:
            return
        await asyncio.sleep(0.01)


async def test_only_events_no_rule_fits_are_settled_at_ingest_by_the_rules_in_force(
    tmp_path: Path,
) -> None:
    (tmp_path / "rules.yaml").write_text(ORDER_RULE)
    customer = replace(new_event("c1"), type="customers/create")
    async with worker_on(tmp_path) as (_, worker):
        # An order may start a run (its `when` decides, once routed); a customer cannot.
        assert not worker.unmatched(new_event("o1"))
        assert worker.unmatched(customer)
        (tmp_path / "rules.yaml").write_text(ORDER_RULE.replace("orders/create", "customers/*"))
        worker.replace_rules(load_rules(tmp_path))
        assert not worker.unmatched(customer)
        assert worker.unmatched(new_event("o2"))


def test_an_event_no_rule_fits_is_unmatched_when_its_202_is_sent(tmp_path: Path) -> None:
    with live_gateway(tmp_path, ORDER_RULE) as gw:
        answer = gw.post_order("c1", topic="customers/create")
        assert answer.status_code == 202
        # Stored unmatched by the commit the 202 waited for: nothing left to route.
        assert gw.event(answer.json()["id"]).status == "unmatched"


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
async def test_stop_returns_when_a_wake_up_races_the_cancellation(
    tmp_path: Path, turns: int
) -> None:
    # Python 3.11's asyncio.wait_for swallows a cancellation that arrives just after the
    # awaited event fired; the worker's loops then ran on and stop() never returned.
    async with worker_on(tmp_path) as (_, worker):
        await worker.start()
        for _ in range(20):  # let both loops go idle, waiting for work
            await asyncio.sleep(0.01)
        worker.notify_runs()
        worker.notify_events()
        for _ in range(turns):
            await asyncio.sleep(0)
        await asyncio.wait_for(worker.stop(), 5)


async def test_events_that_did_not_fit_in_hand_are_not_overtaken_by_later_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer hands committed events to the worker, up to ARRIVED_MAX; the rest wait for
    # the pending scan. Later events must then wait too, or they would run first.
    monkeypatch.setattr(worker_module, "ARRIVED_MAX", 2)
    (tmp_path / "rules.yaml").write_text(ORDERED_RULE.replace("delay_ms: 5", "delay_ms: 0"))
    async with worker_on(tmp_path) as (store, worker):
        stored = []
        for n in range(5):
            body = b'{"customer_key": "alice", "seq": %d}' % n
            stored.append(await store.events.add(new_event(f"in-hand-{n}", body=body)))
        worker._scan = False  # as after the first scan of a running worker
        for one in stored[:3]:  # two fit in hand, the third does not: it waits for the scan
            worker.notify_events([one])
        # The route loop takes the first from the hand and routes it; then two more arrive.
        await worker.route_events([worker._arrived.popleft()])
        for one in stored[3:]:
            worker.notify_events([one])
        await worker.start()
        await succeeded(store, 5)
        await worker.stop()
        runs = sorted(await store.runs.find(limit=10), key=lambda run: run.id)
    assert [run.event_id for run in runs] == [one.id for one in stored]
    # Runs of the key ran in run-id order, so the calls went out in the events' order.
    assert [int(c["key"].split(".")[0]) for c in CALLS] == [run.id for run in runs]


async def test_an_event_whose_routing_crashed_is_marked_error_and_still_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug while planning must not leave the event pending (retried for ever), nor mark it
    # with a status the admin API cannot show (it answered 500 for every list holding it).
    from gateway.api.models import Event as EventModel

    def crash(*_: Any) -> Any:
        raise RuntimeError("a bug while planning")

    monkeypatch.setattr(worker_module, "plan", crash)
    async with worker_on(tmp_path) as (store, worker):
        stored = await store.events.add(new_event("crash"))
        await worker.route_events([await store.events.get(stored.id)])  # type: ignore[list-item]
        event = await store.events.get(stored.id)
    assert event is not None
    assert event.status == "error"
    assert EventModel.of(event).status == "error"


HELD_RULE = """
- name: held
  on: {source: shop, event: orders/create}
  actions:
    - test.record: {label: "held"}
"""


async def test_a_backlog_keeps_the_oldest_events_in_hand_and_none_once_their_runs_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker kept the last 4,096 events it routed and dropped the oldest: claims take the
    # oldest runs first, so in a backlog it dropped the very events the next claims needed,
    # and after the load it held the last 4,096 bodies for good.
    (tmp_path / "rules.yaml").write_text(HELD_RULE)
    async with worker_on(tmp_path, concurrency=2) as (store, worker):
        worker.in_hand = EventsInHand(limit=8)
        stored = [await store.events.add(new_event(f"held-{n}")) for n in range(30)]
        reads: list[int] = []
        by_ids = store.events.by_ids

        async def counted(ids: Any) -> Any:
            reads.extend(ids)
            return await by_ids(ids)

        monkeypatch.setattr(store.events, "by_ids", counted)
        await worker.start()
        await succeeded(store, 30)
        await worker.stop()
        assert await store.runs.count("succeeded") == 30
    # Routed in one page: the first 8 held, the runs of the rest read theirs as claimed.
    assert sorted(reads) == [one.id for one in stored[8:]]
    assert len(worker.in_hand) == 0, "events held after their runs started"
