"""Fast takeover on PostgreSQL: a replica's claims end when the replica is gone (its presence
lock is released by the server), not when its 30 s lease runs out."""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from gateway.store import NewRun, Store
from gateway.store.notify import asyncpg_dsn
from gateway.store.presence import MARK, NAMESPACE
from tests.postgres import fresh_database
from tests.test_replicas import (
    Effects,
    configure,
    deliveries,
    effect_rule,
    effects,  # noqa: F401 (fixture)
    pg_url,  # noqa: F401 (fixture)
    post_all,
    query,
    replicas,
    unfinished,
    upgrade,
    wait_for,
)
from tests.test_store import new_event

pytestmark = pytest.mark.slow
LEASE = 30.0
EVENTS = 12


async def test_release_orphans_ends_only_the_leases_of_present_owners_whose_lock_is_gone() -> None:
    async with fresh_database() as url:
        store = Store(url)
        await store.open()
        holder = await asyncpg.connect(asyncpg_dsn(url))
        try:
            stored = await store.events.add(new_event("d-1"))
            plan = [NewRun(event_id=stored.id, rule="r", kind="actions") for _ in range(3)]
            await store.runs.route(stored.id, plan, "routed")
            alive, gone, unmarked = f"alive{MARK}", f"gone{MARK}", "old-version"
            await holder.execute("SELECT pg_advisory_lock($1, hashtext($2))", NAMESPACE, alive)
            for owner in (alive, gone, unmarked):
                assert len(await store.runs.claim(owner, 1, LEASE)) == 1

            assert await store.runs.release_orphans() == 1
            [taken] = await store.runs.claim("survivor", 3, LEASE)
            assert await store.runs.release_orphans() == 0
        finally:
            await holder.close()
            await store.close()
    assert taken.attempt == 2  # the run "gone" held, taken over at once


def migrated(tmp_path: Path, store: str, url: str) -> Path:
    """The config of replicas calling `url` on a migrated `store`, with a 30 s lease."""
    config = configure(tmp_path, store, [effect_rule(url, order_by=False)], lease=LEASE)
    upgrade(config)
    return config


def test_a_killed_replicas_runs_are_taken_over_in_seconds_not_a_lease(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
    effects: tuple[Effects, str],  # noqa: F811
) -> None:
    server, url = effects
    # Runs are in flight when the replica dies: long enough calls that a loaded machine still
    # sees the victim holding its share after every delivery is acknowledged.
    server.delay = 8.0
    with replicas(migrated(tmp_path, pg_url, url), 2) as gateways:
        victim = gateways[0]
        # Every delivery to the victim: it routes them and claims their runs in the routing
        # commit, so it holds runs whichever replica a loaded machine would have favoured.
        acked = post_all([victim.url], deliveries("kill", EVENTS, EVENTS))
        assert victim.proc is not None
        mark = f":{victim.proc.pid}:"

        def held() -> list[int]:
            rows = query(pg_url, "SELECT id, lease_owner FROM runs WHERE status = 'running'")
            return [r["id"] for r in rows if mark in str(r["lease_owner"])]

        wait_for(lambda: len(held()) >= 1, 30, "runs held by the victim")
        ids = held()
        victim.kill()
        killed = time.monotonic()
        wait_for(lambda: not set(ids) & set(held()), LEASE, "the takeover")
        took = time.monotonic() - killed
        wait_for(lambda: unfinished(pg_url) == 0, 60, "every run")

    print(f"takeover: {len(ids)} runs of a kill -9'd replica taken over {took:.2f} s later")
    assert len(acked) == EVENTS
    statuses = query(pg_url, "SELECT status, attempt FROM runs WHERE id = ANY($1::bigint[])", ids)
    assert {r["status"] for r in statuses} == {"succeeded"}
    assert min(r["attempt"] for r in statuses) == 2  # taken over, not redone from scratch
    assert {len(keys) for keys in server.by_event().values()} == {1}  # repeats kept their key
    assert len(server.by_event()) == EVENTS


def test_no_replica_takes_a_live_replicas_runs(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
    effects: tuple[Effects, str],  # noqa: F811
) -> None:
    server, url = effects
    server.delay = 2.5  # longer than the presence check: live runs are looked at twice
    with replicas(migrated(tmp_path, pg_url, url), 2) as gateways:
        post_all([g.url for g in gateways], deliveries("live", EVENTS, EVENTS))
        wait_for(lambda: unfinished(pg_url) == 0, 60, "every run")
    attempts = query(pg_url, "SELECT attempt FROM runs")
    assert {r["attempt"] for r in attempts} == {1}
    assert len(server.requests) == EVENTS
