"""The overview's counts (`store.stats`) on every backend: grouped in the database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from gateway.store import NewRun, RunStatus, Store
from tests.test_store import new_event


def minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


async def test_events_are_counted_by_source_per_bucket(store: Store) -> None:
    base = minute_floor(datetime.now(UTC)) - timedelta(minutes=10)
    for n, (seconds, source) in enumerate([(5, "shop"), (20, "shop"), (40, "pay"), (65, "shop")]):
        event = replace(new_event(f"d{n}", source=source), received_at=base + timedelta(0, seconds))
        await store.events.add(event)
    old = replace(new_event("old"), received_at=base - timedelta(hours=2))
    await store.events.add(old)

    found = await store.stats.events_by_source(base - timedelta(minutes=1), 60)

    assert sorted(found) == [
        (base, "pay", 1),
        (base, "shop", 2),
        (base + timedelta(minutes=1), "shop", 1),
    ]


async def test_runs_are_counted_by_status_and_usage_summed_per_rule_and_day(
    store: Store,
) -> None:
    stored = await store.events.add(new_event("d1"))
    plan = [
        NewRun(event_id=stored.id, rule="triage", kind="assistant"),
        NewRun(event_id=stored.id, rule="triage", kind="assistant"),
        NewRun(event_id=stored.id, rule="log", kind="actions"),
    ]
    first, second, third = await store.runs.route(stored.id, plan, "routed")
    await store.runs.finish(first, RunStatus.SUCCEEDED)
    await store.runs.finish(third, RunStatus.DEAD, "gave up")
    model_turn = {"kind": "model", "idempotency_key": "k1", "status": "succeeded"}
    await store.steps.record(first, [(1, model_turn)], usage=(100, 20, 0.000042))
    await store.steps.record(
        second, [(1, model_turn | {"idempotency_key": "k2"})], usage=(50, 5, 0.00001)
    )
    since = datetime.now(UTC) - timedelta(hours=1)

    statuses = await store.stats.runs_by_status(since)
    [(day, rule, tokens_in, tokens_out, cost)] = await store.stats.usage_by_rule_day(since)

    assert statuses == {RunStatus.SUCCEEDED: 1, RunStatus.PENDING: 1, RunStatus.DEAD: 1}
    assert (rule, tokens_in, tokens_out) == ("triage", 150, 25)
    assert abs(cost - 0.000052) < 1e-12
    assert day == datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def test_action_latency_runs_from_the_events_arrival_to_its_first_tool_call(
    store: Store,
) -> None:
    arrived = datetime.now(UTC) - timedelta(seconds=2)
    stored = await store.events.add(replace(new_event("d1"), received_at=arrived))
    [run] = await store.runs.route(
        stored.id, [NewRun(event_id=stored.id, rule="r", kind="actions")], "routed"
    )
    await store.steps.start(
        run, 1, kind="tool", tool="log.record", idempotency_key="k", status="started"
    )
    await store.steps.start(
        run, 2, kind="tool", tool="log.record", idempotency_key="k2", status="started"
    )
    [idle] = await store.runs.add([NewRun(event_id=stored.id, rule="idle", kind="actions")])

    [latency] = await store.stats.action_latencies(datetime.now(UTC) - timedelta(hours=1))

    assert 2.0 <= latency < 30.0
    assert idle > run


async def test_steps_awaiting_approval_are_listed_oldest_first(store: Store) -> None:
    stored = await store.events.add(new_event("d1"))
    plan = [NewRun(event_id=stored.id, rule=f"r{n}", kind="assistant") for n in range(2)]
    runs = await store.runs.route(stored.id, plan, "routed")
    for n, run in enumerate(runs):
        waiting = {"kind": "tool", "tool": "email.send", "idempotency_key": f"k{n}"}
        await store.steps.record(run, [(1, waiting | {"status": "awaiting_approval"})])
    await store.steps.record(
        runs[0], [(2, {"kind": "tool", "idempotency_key": "k9", "status": "succeeded"})]
    )

    found = await store.steps.awaiting()

    assert [(s.run_id, s.position) for s in found] == [(runs[0], 1), (runs[1], 1)]
