"""Retention on every backend: old history pruned in batches, unfinished work kept, dedup
kept past the body, space given back on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway import config as config_module
from gateway.cli import app as cli
from gateway.errors import ConfigError
from gateway.retention.prune import Pruner
from gateway.retention_config import RetentionConfig
from gateway.store import EventStatus, NewEvent, NewRun, RunStatus, Store
from tests.postgres import fresh_database

NOW = datetime.now(UTC)
LATER = NOW + timedelta(days=100)  # every default retention has passed


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async def opened(url: str) -> AsyncIterator[Store]:
        store = Store(url)
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    if request.param == "sqlite":
        async for store in opened(f"sqlite:///{tmp_path / 'gateway.db'}"):
            yield store
        return
    async with fresh_database() as url:
        async for store in opened(url):
            yield store


def delivery(key: str, *, source: str = "shop", at: datetime = NOW, size: int = 64) -> NewEvent:
    return NewEvent(
        source=source,
        provider="shopify",
        type="orders/create",
        delivery_id=key,
        headers={"x-shopify-topic": "orders/create"},
        body=b'{"pad": "' + b"x" * size + b'"}',
        received_at=at,
        dedup_key=f"digest-{key}",
    )


async def event_with_run(
    store: Store, key: str, end: RunStatus | None, *, rule: str = "r", at: datetime = NOW
) -> tuple[int, int]:
    """A routed event with one run of `rule`, ended as `end` (None: left pending); its steps."""
    event_id = (await store.events.add(delivery(key, at=at))).id
    [run_id] = await store.runs.route(
        event_id, [NewRun(event_id=event_id, rule=rule, kind="actions")], EventStatus.ROUTED
    )
    if end is RunStatus.AWAITING_APPROVAL:
        await store.runs.pause(run_id, end)
    elif end is not None:
        step = {"kind": "tool", "tool": "t", "idempotency_key": f"{run_id}:0",
                "status": "succeeded", "started_at": NOW, "result": {"ok": True}}  # fmt: skip
        await store.steps.record(run_id, [(0, step)], end)
    return event_id, run_id


def pruner(store: Store, **settings: Any) -> Pruner:
    return Pruner(store, RetentionConfig.model_validate({"pause": 0, "rest": 0, **settings}))


async def test_old_bodies_runs_and_steps_are_pruned(store: Store) -> None:
    event_id, run_id = await event_with_run(store, "old", RunStatus.SUCCEEDED)

    pruned = await pruner(store).prune(LATER)

    assert pruned is not None and (pruned.bodies, pruned.runs, pruned.event_rows) == (1, 1, 1)
    assert await store.runs.get(run_id) is None
    assert await store.steps.of_run(run_id) == []
    assert await store.events.get(event_id) is None


async def test_pending_dead_and_awaiting_approval_work_is_kept(store: Store) -> None:
    kept = [
        await event_with_run(store, k.value, k)
        for k in (RunStatus.DEAD, RunStatus.AWAITING_APPROVAL)
    ]
    kept.append(await event_with_run(store, "pending", None))
    unrouted = (await store.events.add(delivery("unrouted"))).id

    await pruner(store).prune(LATER)

    for event_id, run_id in kept:
        run, event = await store.runs.get(run_id), await store.events.get(event_id)
        assert run is not None and event is not None
        assert event.body.startswith(b'{"pad"')  # a retry or approval still needs the payload
    pending = await store.events.get(unrouted)
    assert pending is not None and pending.body


async def test_recent_history_is_kept(store: Store) -> None:
    event_id, run_id = await event_with_run(store, "new", RunStatus.SUCCEEDED)

    assert await pruner(store).prune(NOW + timedelta(days=29)) is not None

    event, run = await store.events.get(event_id), await store.runs.get(run_id)
    assert event is not None and event.body and run is not None
    assert len(await store.steps.of_run(run_id)) == 1


async def test_a_redelivery_after_its_body_was_pruned_is_still_a_duplicate(store: Store) -> None:
    event_id = (await store.events.add(delivery("late"))).id
    await store.events.set_status(event_id, EventStatus.UNMATCHED)

    pruned = await pruner(store, bodies="1d", runs="1d", dedup_keys="7d").prune(
        NOW + timedelta(days=3)
    )
    again = await store.events.add(delivery("late", at=NOW + timedelta(days=3)))

    assert pruned is not None and (pruned.bodies, pruned.event_rows) == (1, 0)
    event = await store.events.get(event_id)
    assert event is not None and event.body == b"" and event.headers == {}
    assert again.duplicate and again.id == event_id


async def test_event_rows_go_once_the_dedup_horizon_has_passed(store: Store) -> None:
    event_id = (await store.events.add(delivery("gone"))).id
    await store.events.set_status(event_id, EventStatus.UNMATCHED)
    settings = {"bodies": "1d", "runs": "1d", "dedup_keys": "7d"}

    pruned = await pruner(store, **settings).prune(NOW + timedelta(days=8))

    assert pruned is not None and pruned.event_rows == 1
    assert not (await store.events.add(delivery("gone", at=NOW + timedelta(days=8)))).duplicate


async def test_a_rule_override_keeps_its_runs_longer(store: Store) -> None:
    _, audit = await event_with_run(store, "audit", RunStatus.SUCCEEDED, rule="audit")
    _, other = await event_with_run(store, "other", RunStatus.FAILED, rule="other")

    await pruner(store, rules={"audit": {"runs": "365d"}}).prune(LATER)

    assert await store.runs.get(audit) is not None
    assert await store.runs.get(other) is None


async def test_a_source_override_prunes_its_bodies_sooner(store: Store) -> None:
    chatty = (await store.events.add(delivery("c", source="chatty"))).id
    shop = (await store.events.add(delivery("s"))).id
    for event_id in (chatty, shop):
        await store.events.set_status(event_id, EventStatus.UNMATCHED)

    await pruner(store, sources={"chatty": {"bodies": "2d"}}).prune(NOW + timedelta(days=3))

    pruned, kept = await store.events.get(chatty), await store.events.get(shop)
    assert pruned is not None and pruned.body == b""
    assert kept is not None and kept.body


async def test_pruning_deletes_in_batches_of_the_configured_size(store: Store) -> None:
    for n in range(7):
        await event_with_run(store, f"b{n}", RunStatus.SUCCEEDED)
    batches: list[int] = []
    original = store.retention.prune_runs_before

    async def counted(*args: Any, **kwargs: Any) -> int:
        batches.append(await original(*args, **kwargs))
        return batches[-1]

    store.retention.prune_runs_before = counted  # type: ignore[method-assign]
    pruned = await pruner(store, batch=3).prune(LATER)

    assert batches == [3, 3, 1, 0]
    assert pruned is not None and pruned.runs == 7 and pruned.event_rows == 7


async def test_idle_threads_are_forgotten_and_recent_ones_kept(store: Store) -> None:
    _, run_id = await event_with_run(store, "t", None)
    step = {"kind": "model", "idempotency_key": "m:0", "status": "succeeded", "started_at": NOW}
    item = {"role": "user", "content": "hi"}
    await store.steps.record(run_id, [(0, step)], RunStatus.SUCCEEDED, thread=("t-1", [item]))

    await pruner(store, runs="365d").prune(NOW + timedelta(days=30))
    assert await store.threads.items("t-1") == [item]
    await pruner(store, runs="365d").prune(LATER)
    assert await store.threads.items("t-1") == []


async def test_only_one_replica_prunes_at_a_time(store: Store) -> None:
    await event_with_run(store, "x", RunStatus.SUCCEEDED)
    other = Store(store.url)
    await other.open()
    try:
        async with other.retention.exclusive() as held:
            assert held
            assert await pruner(store).prune(LATER) is None
        assert await pruner(store).prune(LATER) is not None
    finally:
        await other.close()


async def test_pruning_gives_space_back_on_sqlite(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
    await store.open()
    try:
        ids = [(await store.events.add(delivery(f"big{n}", size=64 * 1024))).id for n in range(300)]
        await asyncio.gather(*(store.events.set_status(i, EventStatus.UNMATCHED) for i in ids))
        full = await store.retention.size()

        pruned = await pruner(store).prune(LATER)

        assert pruned is not None and pruned.pages > 0
        assert full > 300 * 64 * 1024
        assert await store.retention.size() < full / 10
        assert (tmp_path / "gateway.db").stat().st_size < full / 10
    finally:
        await store.close()


def test_gateway_check_shows_the_retention_in_force(
    write_config: Callable[..., Path],
) -> None:
    path = write_config(retention={"bodies": "14d", "rules": {"audit": {"runs": "365d"}}})

    result = CliRunner().invoke(cli, ["check", "-c", str(path)])

    assert result.exit_code == 0, result.output
    assert "retention: bodies 14d, runs 90d, dedup keys 7d, threads 90d" in result.output
    assert "retention: rule audit: runs 365d" in result.output


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"bodies": "30x"}, "not a duration"),
        ({"runs": "0d"}, "runs must be longer than 0"),
        ({"sources": {"shop": {"runs": "1d"}}}, "unknown key 'runs' (it takes bodies)"),
        ({"batch": 0}, "greater than or equal to 1"),
    ],
)
def test_a_bad_retention_setting_is_a_config_error_naming_it(
    write_config: Callable[..., Path], settings: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        config_module.load(write_config(retention=settings), environ={})

    assert any("retention" in p and problem in p for p in raised.value.problems)
