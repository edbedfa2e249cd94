#!/usr/bin/env python3
"""Ingest while pruning: the latency of storing an event (store.events.add, the ingest
writer's group commit) while the retention job prunes --events old events, against the same
measure with nothing else running (the baseline, in the same run).

Old events (--body bytes each, routed, no runs) are stored first, 500 a commit; then new
events are added one at a time at --rate per second for --seconds idle, then again while a
pass of `Pruner.prune` (bodies emptied, then rows deleted, in batches of --batch; on SQLite
the freed pages given back) runs over the old ones. Reported: p50/p99 of each, the ratio of
the p99s (the target: at most 1.5), the prune's events/s, and the store's size before/after.

Every batch is one bounded transaction, so the ratio does not depend on how many events
are pruned, only how long the prune lasts; --events sets that.

Usage:  bench/retention [--backend sqlite|postgresql] [--events 100000] [--body 1024]
        [--rate 200] [--seconds 10] [--batch 100] [--rest 1.0] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from common import Arguments, ensure_venv, write_json

ensure_venv(__file__)

import asyncpg  # type: ignore[import-untyped]  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from gateway import log as gateway_log  # noqa: E402
from gateway.retention.prune import Pruner  # noqa: E402
from gateway.retention_config import RetentionConfig  # noqa: E402
from gateway.store import EventStatus, NewEvent, Store  # noqa: E402

SERVER = os.environ.get("GATEWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@asynccontextmanager
async def store_on(backend: str) -> AsyncIterator[Store]:
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="bench-retention-")
        store = Store(f"sqlite:///{folder}/gateway.db")
        await store.open()
        try:
            yield store
        finally:
            await store.close()
        return
    name = f"bench_retention_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(SERVER)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(SERVER).set(drivername="postgresql+asyncpg", database=name)
    store = Store(url.render_as_string(hide_password=False))
    await store.open()
    try:
        yield store
    finally:
        await store.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def event(key: str, body: bytes, at: datetime) -> NewEvent:
    return NewEvent("shop", "shopify", "orders/create", key, {"x-shopify-topic": "orders"}, body,
                    at, dedup_key=key)  # fmt: skip


async def seed(store: Store, count: int, size: int) -> None:
    body = b'{"pad": "' + os.urandom(size // 2).hex().encode()[: size - 12] + b'"}'
    old = datetime.now(UTC) - timedelta(days=400)
    for at in range(0, count, 500):
        stored = await asyncio.gather(
            *(
                store.events.add(event(f"old-{k}", body, old))
                for k in range(at, min(at + 500, count))
            )
        )
        await store.runs.route_and_claim([(s.id, [], EventStatus.UNMATCHED) for s in stored], None)


async def ingest(store: Store, rate: float, seconds: float, tag: str) -> list[float]:
    latencies: list[float] = []
    body = b'{"id": 1, "note": "' + b"n" * 1000 + b'"}'
    start = time.perf_counter()
    count = int(rate * seconds)
    for k in range(count):
        due = start + k / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        began = time.perf_counter()
        await store.events.add(event(f"{tag}-{k}", body, datetime.now(UTC)))
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    gateway_log.configure("warning")
    async with store_on(args.backend) as store:
        began = time.perf_counter()
        await seed(store, args.events, args.body)
        seeded = time.perf_counter() - began
        size_before = await store.retention.size()
        idle = await ingest(store, args.rate, args.seconds, "idle")
        settings = RetentionConfig(batch=args.batch, pause=args.pause, rest=args.rest)
        pruner = Pruner(store, settings)
        began = time.perf_counter()
        prune = asyncio.create_task(pruner.prune())
        during: list[float] = []
        while not prune.done():
            during += await ingest(store, args.rate, 1.0, f"during-{len(during)}")
        pruned = await prune
        took = time.perf_counter() - began
        result = {
            "backend": args.backend,
            "events": args.events,
            "body_bytes": args.body,
            "seed_s": round(seeded, 1),
            "prune_s": round(took, 1),
            "batch": args.batch,
            "rest": args.rest,
            "pruned": pruned.as_dict() if pruned else None,
            "prune_events_per_s": round(args.events / took),
            "idle_p50_ms": round(p(idle, 50), 2),
            "idle_p99_ms": round(p(idle, 99), 2),
            "during_p50_ms": round(p(during, 50), 2),
            "during_p99_ms": round(p(during, 99), 2),
            "samples": [len(idle), len(during)],
            "size_before": size_before,
            "size_after": await store.retention.size(),
        }
        result["p99_ratio"] = round(result["during_p99_ms"] / result["idle_p99_ms"], 2)
        return result


if __name__ == "__main__":
    parser = Arguments(__doc__, quick={"events": 10_000, "seconds": 3.0})
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--body", type=int, default=1024)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.01)
    parser.add_argument("--rest", type=float, default=1.0)
    options = parser.parse()
    found = asyncio.run(main(options))
    print(json.dumps(found, indent=1))
    write_json(options.json, found)
