"""The store's side of outlasting outages, on SQLite and PostgreSQL: runs waiting behind an
open circuit, woken by a probe, the start of a run's series of failures, and routing that
tells the replica that lost the race for an event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.store import NewRun, RunStatus, Store
from tests.test_store import new_event, routed_runs

REASON = "circuit open: jira"


async def test_a_waiting_run_spends_no_attempt_and_is_claimed_when_due(store: Store) -> None:
    [run_id] = await routed_runs(store, [None])
    [claimed] = await store.runs.claim("w1", 1, 60)
    assert claimed.attempt == 1
    until = datetime.now(UTC) + timedelta(hours=1)
    await store.runs.wait(run_id, until, REASON)

    run = await store.runs.get(run_id)
    assert run is not None
    assert (run.status, run.attempt, run.error) == (RunStatus.WAITING, 0, REASON)
    assert [r.id for r in await store.runs.find(status=RunStatus.WAITING)] == [run_id]
    assert await store.runs.claim("w1", 1, 60) == []
    due = await store.runs.next_due()
    assert due is not None and abs((due - until).total_seconds()) < 0.001
    assert (await store.runs.queue_stats())["waiting"][0] == 1


async def test_wake_makes_the_runs_waiting_for_that_downstream_due_now(store: Store) -> None:
    first, other = await routed_runs(store, [None, None])
    await store.runs.claim("w1", 2, 60)
    later = datetime.now(UTC) + timedelta(hours=1)
    await store.runs.wait(first, later, REASON)
    await store.runs.wait(other, later, "circuit open: email")

    assert await store.runs.wake(REASON) == 1
    [taken] = await store.runs.claim("w2", 2, 60)
    assert (taken.id, taken.status, taken.attempt) == (first, RunStatus.RUNNING, 1)


async def test_a_waiting_run_holds_its_ordering_key(store: Store) -> None:
    first, _ = await routed_runs(store, ["order-1", "order-1"])
    await store.runs.claim("w1", 1, 60)
    await store.runs.wait(first, datetime.now(UTC) + timedelta(hours=1), REASON)

    assert await store.runs.claim("w1", 2, 60) == []  # the second run stays behind the first


async def test_the_failure_series_starts_at_the_first_retry_and_an_operator_retry_resets_it(
    store: Store,
) -> None:
    [run_id] = await routed_runs(store, [None])
    await store.runs.claim("w1", 1, 60)
    soon = datetime.now(UTC)
    await store.runs.retry_later(run_id, soon, "503")
    [again] = await store.runs.claim("w1", 1, 60)
    since = again.retry_since
    assert since is not None
    await store.runs.retry_later(run_id, soon, "503")
    run = await store.runs.get(run_id)
    assert run is not None and run.retry_since == since  # the series goes on

    await store.runs.finish(run_id, RunStatus.DEAD, "gave up")
    assert await store.runs.requeue(run_id, reset_attempts=True)
    run = await store.runs.get(run_id)
    assert run is not None and run.retry_since is None


async def test_routing_an_event_routed_elsewhere_first_reports_it_as_not_routed_here(
    store: Store,
) -> None:
    stored = await store.events.add(new_event("routed-twice"))
    plan = [NewRun(event_id=stored.id, rule="r", kind="actions")]
    first, _ = await store.runs.route_and_claim([(stored.id, plan, "routed")], None)
    again, _ = await store.runs.route_and_claim([(stored.id, plan, "routed")], None)
    unmatched = await store.events.add(new_event("no-rule"))
    none, _ = await store.runs.route_and_claim([(unmatched.id, [], "unmatched")], None)

    assert len(first[0] or []) == 1
    assert again == [None]  # the loser logs nothing and starts nothing
    assert none == [[]]  # routed here, to no rule
