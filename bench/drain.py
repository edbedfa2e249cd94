#!/usr/bin/env python3
"""Worker speed: how fast stored events drain into finished runs, and how soon an event that
arrives at an idle gateway reaches its handler.

  drain     --events (10,000) events stored straight into a fresh SQLite store (through
            store.events.add, group-committed), all matching one rule whose action is
            `log.record` (no side effect outside the gateway); then a Worker starts and the
            clock runs until every run has finished: events/s drained (route + claim + run +
            journal), and the process's CPU time (user + system, from getrusage) per event
            over the same span: the worker's cost per run. Baseline: the same number of
            `log.record` calls made directly in a loop (Tool.call: validate + call),
            in-process; the ratio says what the engine costs.
  latency   a whole gateway (create_app, real uvicorn on loopback, in this process) with one
            rule calling `bench.mark`, a tool this script registers that notes
            time.perf_counter() when it is called. --samples (200) Shopify-signed events are
            posted one at a time, each after the previous one was handled (the worker idles in
            between): p50/p99 of 202 -> handler (from the client reading the 202 to the
            handler call; negative when the handler ran before the client saw its answer) and
            of request -> handler (from sending the POST).

Targets (reported, not enforced): >= 2,000 events/s drained on SQLite; p50 <= 5 ms idle.
Logs are configured at `warning` (`--log-level`), so the per-run info lines do not count;
`--log-level info` logs as `gateway serve` does (to stderr: send it to /dev/null).

Usage:  bench/drain [--events 10000] [--samples 200] [--timeout 600] [--log-level warning]
                    [--json FILE] [--keep]
        (re-executes itself under the repo's .venv python)
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import Arguments, ensure_venv, write_json

TARGET_RATE = 2000.0
TARGET_P50_MS = 5.0
SHOP_SECRET = "shpss_test_gateway_secret"
TMP = tempfile.gettempdir()

DRAIN_RULES = """\
- name: drain
  on: {source: bench, event: "*"}
  actions:
    - log.record:
        message: "{{ event.type }} {{ event.delivery_id }}"
"""

LATENCY_RULES = """\
- name: latency
  on: {source: shop, event: orders/create}
  actions:
    - bench.mark: {id: "{{ event.delivery_id }}"}
"""


ensure_venv(__file__)

from typing import Annotated  # noqa: E402

from pydantic import Field  # noqa: E402

from gateway import collector  # noqa: E402
from gateway import log as gateway_log  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.config import Config, SourceConfig  # noqa: E402
from gateway.ingest.provider import PROVIDERS  # noqa: E402
from gateway.rules.loader import load as load_rules  # noqa: E402
from gateway.store import NewEvent, Store  # noqa: E402
from gateway.testing.server import serve_in_thread  # noqa: E402
from gateway.tools import TOOLS, NoSettings, Toolbox, ToolContext, tool  # noqa: E402
from gateway.worker import Worker  # noqa: E402

# The latency probe: when did the worker call the handler for each delivery id.
MARKS: dict[str, float] = {}
MARKED = threading.Condition()


@tool("bench.mark", side_effects=False)
async def mark(
    context: ToolContext[NoSettings, None],
    id: Annotated[str, Field(description="The event's delivery id")],
) -> dict[str, Any]:
    """Note the moment this handler is called (bench/drain's latency probe)."""
    at = time.perf_counter()
    with MARKED:
        MARKS[id] = at
        MARKED.notify_all()
    return {"id": id}


def cpu_seconds() -> float:
    """This process's CPU time so far, user + system, every thread (the journal's too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def config_for(workdir: Path, rules: str, sources: dict[str, Any]) -> Config:
    rules_dir = workdir / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(rules)
    return Config.model_validate(
        {
            "store": f"sqlite:///{workdir / 'gateway.db'}",
            "rules": str(rules_dir),
            "sources": sources,
            "base_dir": workdir,
        }
    )


# --------------------------------------------------------------------------- drain


async def store_events(store: Store, count: int) -> float:
    body = json.dumps({"order": 1, "total": "12.00", "note": "drain"}).encode()
    now = datetime.now(UTC)
    started = time.perf_counter()
    for first in range(0, count, 1000):
        await asyncio.gather(
            *(
                store.events.add(
                    NewEvent(
                        source="bench",
                        provider="generic",
                        type="order.created",
                        delivery_id=f"drain-{n}",
                        headers={"content-type": "application/json"},
                        body=body,
                        received_at=now,
                    )
                )
                for n in range(first, min(first + 1000, count))
            )
        )
    return time.perf_counter() - started


async def drain(workdir: Path, count: int, limit_s: float = 600) -> dict[str, Any]:
    config = config_for(workdir, DRAIN_RULES, {"bench": {"provider": "generic", "secret": "x"}})
    rules = load_rules(config.rules_dir)
    store = Store(config.store_url)
    await store.open()
    try:
        insert_s = await store_events(store, count)
        worker = Worker(store, rules, config)
        finished = asyncio.Event()
        ended: dict[str, int] = {}

        def on_end(_run_id: int, status: str) -> None:
            ended[status] = ended.get(status, 0) + 1
            if sum(ended.values()) >= count:
                finished.set()

        worker.on_run_end.append(on_end)
        collector.settle()  # as `gateway serve` does once started
        started, cpu = time.perf_counter(), cpu_seconds()
        await worker.start()
        await asyncio.wait_for(finished.wait(), limit_s)
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        await worker.stop()
        succeeded = await store.runs.count("succeeded")
    finally:
        await store.close()
    return {
        "events": count,
        "insert_s": round(insert_s, 3),
        "drain_s": round(elapsed, 3),
        "events_per_s": round(count / elapsed, 1),
        # The worker's CPU per event (this process holds nothing else while it drains): the
        # steady measure on a shared machine, where the rate swings with the neighbours.
        "cpu_us_per_event": round(cpu / count * 1e6, 1),
        "runs_succeeded": succeeded,
        "ended": ended,
    }


async def baseline(count: int) -> dict[str, Any]:
    """The same handler, called directly `count` times: what the work itself costs."""
    record = TOOLS["log.record"]
    toolbox = Toolbox()
    started = time.perf_counter()
    for n in range(count):
        context = toolbox.context(record, key=f"baseline.{n}", run_id=n)
        await record.call(context, {"message": f"order.created drain-{n}"})
    elapsed = time.perf_counter() - started
    return {"calls": count, "seconds": round(elapsed, 4), "calls_per_s": round(count / elapsed, 1)}


# --------------------------------------------------------------------------- latency


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def wait_for_mark(delivery: str, timeout: float = 10) -> float:
    with MARKED:
        if not MARKED.wait_for(lambda: delivery in MARKS, timeout=timeout):
            raise RuntimeError(f"event {delivery} never reached its handler")
        return MARKS[delivery]


def latency(workdir: Path, samples: int) -> dict[str, Any]:
    sources = {"shop": {"provider": "shopify", "secret": SHOP_SECRET}}
    config = config_for(workdir, LATENCY_RULES, sources)
    app = create_app(config)  # also registers the providers
    shopify = PROVIDERS["shopify"](SourceConfig.model_validate(sources["shop"]))
    after_202: list[float] = []
    after_send: list[float] = []
    with serve_in_thread(app) as url:
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        warmup = 20
        for n in range(samples + warmup):
            delivery = f"latency-{n}"
            body = json.dumps({"id": n, "name": f"#{n}", "total_price": "12.00"}).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Event-Id": delivery,
                "X-Shopify-Shop-Domain": "bench.myshopify.com",
            }
            headers |= shopify.sign(body, headers, time.time())
            sent = time.perf_counter()
            connection.request("POST", "/hooks/shop", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            answered = time.perf_counter()
            if response.status != 202:
                raise RuntimeError(f"POST answered {response.status}")
            handled = wait_for_mark(delivery)
            if n >= warmup:
                after_202.append((handled - answered) * 1000)
                after_send.append((handled - sent) * 1000)
            time.sleep(0.005)  # let the worker go idle again
        connection.close()

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(statistics.median(values), 3),
            "p99_ms": round(percentile(values, 0.99), 3),
            "max_ms": round(max(values), 3),
        }

    return {
        "samples": samples,
        "after_202": summary(after_202),
        "after_request": summary(after_send),
        "handled_before_202": sum(1 for v in after_202 if v < 0),
    }


# --------------------------------------------------------------------------- report


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Arguments(__doc__, quick={"events": 1000, "samples": 50})
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--timeout", type=float, default=600, help="give up draining after this many seconds"
    )
    parser.add_argument("--log-level", default="warning", help="the gateway's log level")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    gateway_log.configure(args.log_level)
    workdir = Path(tempfile.mkdtemp(prefix="bench-drain-", dir=TMP))
    try:
        (workdir / "drain").mkdir()
        (workdir / "latency").mkdir()
        drained = asyncio.run(drain(workdir / "drain", args.events, args.timeout))
        direct = asyncio.run(baseline(args.events))
        idle = latency(workdir / "latency", args.samples)
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    ratio = drained["events_per_s"] / direct["calls_per_s"]
    machine = f"{platform.machine()}, {os.cpu_count()} CPU(s)"
    print(f"machine: {machine}, Python {platform.python_version()}, SQLite store in {TMP}")
    print(
        f"drain    {drained['events']} stored events ({drained['insert_s']} s to store) "
        f"drained in {drained['drain_s']} s: {drained['events_per_s']:.0f} events/s, "
        f"{drained['cpu_us_per_event']:.0f} us of CPU per event "
        f"(target >= {TARGET_RATE:.0f}: {verdict(drained['events_per_s'] >= TARGET_RATE)})"
    )
    print(
        f"baseline {direct['calls']} direct log.record calls in {direct['seconds']} s: "
        f"{direct['calls_per_s']:.0f} calls/s; drain/baseline = {ratio:.3f}"
    )
    a, r = idle["after_202"], idle["after_request"]
    print(
        f"latency  {idle['samples']} events one at a time: 202 -> handler p50 {a['p50_ms']} ms, "
        f"p99 {a['p99_ms']} ms (target p50 <= {TARGET_P50_MS:g}: "
        f"{verdict(a['p50_ms'] <= TARGET_P50_MS)}); "
        f"request -> handler p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; "
        f"{idle['handled_before_202']} handled before the client read the 202"
    )
    problems = []
    if drained["runs_succeeded"] != args.events:
        problems.append(f"only {drained['runs_succeeded']} of {args.events} runs succeeded")
    write_json(args.json, {"drain": drained, "baseline": direct, "ratio": ratio, "latency": idle})
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
