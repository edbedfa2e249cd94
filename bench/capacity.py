#!/usr/bin/env python3
"""Capacity of one PostgreSQL primary: the database work of each stage of an event, driven by
the gateway's own store code from several processes standing in for replicas (no HTTP).

For each replica count R and batch size B (events a replica has in flight at once: the group
commit's batch), R processes each take --events events through the five stages an event
costs, stage by stage, all replicas at once:

  insert   store.events.add (the ingest writer, group-committed), a 3 KB body
  route    store.runs.route_and_claim: one run per event, B events a call
  claim    store.runs.claim(limit=B) until nothing is left (FOR UPDATE SKIP LOCKED)
  step     store.steps.start: the journal entry written before a tool call
  finish   store.steps.finish(..., run_status=succeeded): the step's result and the run's end

Between stages the parent reads, for the bench's own database: the CPU time of its PostgreSQL
backends (/proc/<pid>/stat utime+stime of the pids pg_stat_activity lists for it; 10 ms
ticks), its commits (pg_stat_database.xact_commit) and WAL written (pg_current_wal_lsn: the
whole server's, so other work on the server counts too: an upper bound), and each replica
reports its own CPU time (getrusage). At the end: rows and bytes per event (table + index +
TOAST sizes over the events stored).

PostgreSQL must be on this machine (its backends' /proc entries are read).

Usage:  bench/capacity [--events 2000] [--replicas 1,2,4] [--batch 1,16,64] [--json FILE]
        [--repeat 3] [--url postgresql://postgres@127.0.0.1:5432/test]
        (a server: a database is made per run and dropped; each figure is the best of the
        repeats, as other work on a shared server only adds to them)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import REPO, Arguments, ensure_venv, write_json

STAGES = ("insert", "route", "claim", "step", "finish")
TICK = os.sysconf("SC_CLK_TCK")
# A real webhook body (Shopify's order, ~3 KB of JSON): TOAST compresses it as it would a real one.
FIXTURE = REPO.parent / "shared" / "fixtures" / "webhooks" / "shopify" / "orders_create.json"
BODY = FIXTURE.read_bytes() if FIXTURE.exists() else b'{"order": "' + b"x" * 3000 + b'"}'


ensure_venv(__file__)

import asyncpg  # type: ignore[import-untyped]  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from gateway.store import NewEvent, NewRun, RunStatus, StepStatus, Store  # noqa: E402

# ------------------------------------------------------------------ a replica (child process)


def cpu_us() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1e6


async def replica(url: str, index: int, events: int, batch: int) -> None:
    store = Store(url)
    await store.open(migrate=False)
    event_ids: list[int] = []
    run_ids: list[int] = []
    owner = f"replica-{index}"

    async def chunks(items: list[Any], call: Any) -> None:
        for at in range(0, len(items), batch):
            await asyncio.gather(*(call(item) for item in items[at : at + batch]))

    async def insert(k: int) -> None:
        new = NewEvent("bench", "bench", "order", f"{index}-{k}", {"x-topic": "orders/create"},
                       BODY, datetime.now(UTC), dedup_key=f"{index}-{k}")  # fmt: skip
        event_ids.append((await store.events.add(new)).id)

    async def route() -> None:
        for at in range(0, len(event_ids), batch):
            page = event_ids[at : at + batch]
            routes = [(i, [NewRun(event_id=i, rule="r", kind="actions")], "routed") for i in page]
            await store.runs.route_and_claim(routes, None)

    async def claim() -> None:
        while taken := await store.runs.claim(owner, batch, 600):
            run_ids.extend(run.id for run in taken)

    async def step(run_id: int) -> None:
        arguments = {"issue": "OPS-1", "body": "x" * 200}
        await store.steps.start(run_id, 0, kind="tool", tool="jira.comment",
                                arguments=arguments, idempotency_key=f"{run_id}:0",
                                status=StepStatus.STARTED)  # fmt: skip

    async def finish(run_id: int) -> None:
        values = {"status": StepStatus.SUCCEEDED, "result": {"id": "10001"},
                  "duration_ms": 12.0}  # fmt: skip
        await store.steps.finish(run_id, 0, values, RunStatus.SUCCEEDED)

    work: dict[str, Callable[[], Awaitable[None]]] = {
        "insert": lambda: chunks(list(range(events)), insert),
        "route": route,
        "claim": claim,
        "step": lambda: chunks(run_ids, step),
        "finish": lambda: chunks(run_ids, finish),
    }
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line not in work:
            break
        before = cpu_us()
        await work[line]()
        print(json.dumps({"cpu_us": cpu_us() - before, "runs": len(run_ids)}), flush=True)
    await store.close()


# ------------------------------------------------------------------ the parent


def backend_ticks(pids: list[int]) -> dict[int, int]:
    ticks = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks


async def snapshot(admin: Any, database: str) -> dict[str, Any]:
    pids = [r["pid"] for r in await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database)]  # fmt: skip
    # Write transactions started: the next transaction id (reading it takes none). Server-wide,
    # like the WAL position; pg_stat_database's commit counter lags by up to 10 s.
    commits = await admin.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
    lsn = await admin.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    return {"ticks": backend_ticks(pids), "commits": int(commits), "wal": int(lsn),
            "at": time.perf_counter()}  # fmt: skip


def difference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    ticks = sum(t - before["ticks"].get(pid, 0) for pid, t in after["ticks"].items())
    return {
        "pg_cpu_us": ticks * 1e6 / TICK,
        "commits": after["commits"] - before["commits"],
        "wal_bytes": after["wal"] - before["wal"],
        "seconds": after["at"] - before["at"],
    }


async def one_setting(server: str, replicas: int, events: int, batch: int) -> dict[str, Any]:
    name = f"bench_capacity_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server).set(drivername="postgresql+asyncpg", database=name)
    url_text = url.render_as_string(hide_password=False)
    store = Store(url_text)
    await store.open()  # migrate
    await store.close()
    watcher = await asyncpg.connect(make_url(server).set(database=name).render_as_string(
        hide_password=False))  # fmt: skip
    # Blocking pipes on purpose: the parent only waits for every replica to end a stage.
    children = [
        subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, __file__, "--child", url_text, str(i), str(events), str(batch)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for i in range(replicas)
    ]  # fmt: skip
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        stages: dict[str, dict[str, float]] = {}
        for stage in STAGES:
            before = await snapshot(watcher, name)
            for child in children:
                assert child.stdin is not None
                child.stdin.write(stage + "\n")
                child.stdin.flush()
            reports = [json.loads(c.stdout.readline()) for c in children]  # type: ignore[union-attr]
            after = await snapshot(watcher, name)
            total = events * replicas
            got = difference(before, after)
            stages[stage] = {
                "events_per_s": total / got["seconds"],
                "pg_cpu_us_per_event": got["pg_cpu_us"] / total,
                "replica_cpu_us_per_event": sum(r["cpu_us"] for r in reports) / total,
                "commits_per_event": got["commits"] / total,
                "commits_per_s": got["commits"] / got["seconds"],
                "wal_bytes_per_event": got["wal_bytes"] / total,
            }
        for child in children:
            child.stdin.write("quit\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
            child.wait(60)
        sizes = {}
        for table in ("events", "runs", "steps"):
            rows = await watcher.fetchval(f"SELECT count(*) FROM {table}")
            size = await watcher.fetchval(f"SELECT pg_total_relation_size('{table}')")
            sizes[table] = {"rows_per_event": rows / total, "bytes_per_event": size / total}
    finally:
        for child in children:
            child.kill()
        await watcher.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {"replicas": replicas, "batch": batch, "events": events * replicas,
            "stages": stages, "sizes": sizes}  # fmt: skip


def summary(result: dict[str, Any]) -> str:
    stages = result["stages"]
    pg = sum(s["pg_cpu_us_per_event"] for s in stages.values())
    rep = sum(s["replica_cpu_us_per_event"] for s in stages.values())
    commits = sum(s["commits_per_event"] for s in stages.values())
    wal = sum(s["wal_bytes_per_event"] for s in stages.values())
    lines = [f"replicas {result['replicas']}, batch {result['batch']}, "
             f"{result['events']} events: PG {pg:.0f} CPU-us/event, replicas {rep:.0f} "
             f"CPU-us/event, {commits:.2f} commits/event, {wal:.0f} WAL bytes/event"]  # fmt: skip
    for stage, s in stages.items():
        lines.append(
            f"  {stage:7} {s['events_per_s']:8.0f} ev/s  PG {s['pg_cpu_us_per_event']:6.0f} us"
            f"  replica {s['replica_cpu_us_per_event']:6.0f} us  "
            f"{s['commits_per_event']:5.2f} commits/ev ({s['commits_per_s']:6.0f}/s)  "
            f"WAL {s['wal_bytes_per_event']:6.0f} B"
        )
    return "\n".join(lines)


def best(tries: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's best over the repeats: other work on a shared server only adds."""
    result = tries[0]
    for stage, figures in result["stages"].items():
        for key in figures:
            values = [t["stages"][stage][key] for t in tries]
            figures[key] = max(values) if key.endswith("_per_s") else min(values)
    return result


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for replicas in args.replicas:
        for batch in args.batch:
            tries = [await one_setting(args.url, replicas, args.events, batch)
                     for _ in range(args.repeat)]  # fmt: skip
            result = best(tries)
            print(summary(result), flush=True)
            results.append(result)
    sizes = results[-1]["sizes"]
    print("rows and bytes per event (table + indexes + TOAST): " + ", ".join(
        f"{t} {s['rows_per_event']:.1f} rows {s['bytes_per_event']:.0f} B"
        for t, s in sizes.items()))  # fmt: skip
    return results


def integers(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        url, index, events, batch = sys.argv[2], *map(int, sys.argv[3:6])
        asyncio.run(replica(url, index, events, batch))
        sys.exit(0)
    parser = Arguments(__doc__, quick={"events": 200, "replicas": [1, 2], "repeat": 1})
    parser.add_argument("--events", type=int, default=2000, help="events per replica")
    parser.add_argument("--replicas", type=integers, default=[1, 2, 4])
    parser.add_argument("--batch", type=integers, default=[1, 16, 64])
    parser.add_argument("--url", default=os.environ.get(
        "GATEWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"))  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting; best kept")
    options = parser.parse()
    found = asyncio.run(main(options))
    write_json(options.json, {"results": found, "cpus": os.cpu_count()})
