#!/usr/bin/env python3
"""Thin events: what fetching each event's object before routing costs the worker.

  thin      --events (1,000) Stripe thin events stored straight into a fresh SQLite store,
            on a source with `fetch: thin` whose API is a loopback server (uvicorn in a
            thread) answering the related object; a Worker starts and the clock runs until
            every event's run (a `log.record` action) has finished:
            the fetch through the real `stripe` library, the retry journal, the second
            routing, the run.
  baseline  the same number of snapshot events (`"object": "event"`, the object inside) on
            the same source, drained the same way: no fetch.

The ratio thin / baseline is what fetching costs on this machine, measured in the same run;
it is reported, not enforced.

Usage:  bench/thin [--quick] [--events 1000] [--timeout 600] [--json FILE]
        (re-executes itself under the repo's .venv python)
"""

from __future__ import annotations

import asyncio
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import Arguments, ensure_venv, write_json

RULES = """\
- name: meter
  on: {source: pay, event: "*"}
  actions:
    - log.record:
        message: "{{ event.type }} {{ event.delivery_id }}"
"""
METER = {"id": "mtr_1", "object": "billing.meter", "status": "active"}


ensure_venv(__file__)

import orjson  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from gateway import collector  # noqa: E402
from gateway import log as gateway_log  # noqa: E402
from gateway.config import Config  # noqa: E402
from gateway.rules.loader import load as load_rules  # noqa: E402
from gateway.store import NewEvent, Store  # noqa: E402
from gateway.testing.server import serve_in_thread  # noqa: E402
from gateway.worker import Worker  # noqa: E402


def stripe_api() -> Starlette:
    async def meter(request: Request) -> JSONResponse:
        return JSONResponse(METER | {"id": request.path_params["id"]})

    return Starlette(routes=[Route("/v1/billing/meters/{id}", meter)])


def thin(number: int) -> bytes:
    meter = f"mtr_{number}"
    return orjson.dumps(
        {
            "id": f"evt_thin_{number}",
            "object": "v2.core.event",
            "type": "v1.billing.meter.error_report_triggered",
            "created": "2026-11-30T10:00:00.000Z",
            "related_object": {
                "id": meter,
                "type": "billing.meter",
                "url": f"/v1/billing/meters/{meter}",
            },
        }
    )


def snapshot(number: int) -> bytes:
    return orjson.dumps(
        {
            "id": f"evt_snap_{number}",
            "object": "event",
            "type": "v1.billing.meter.error_report_triggered",
            "object_inside": True,
            "data": {"object": METER | {"id": f"mtr_{number}"}},
        }
    )


async def drain(workdir: Path, api: str, bodies: list[bytes], limit: float) -> float:
    """Seconds from the worker's start until every body's run has finished."""
    rules_dir = workdir / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(RULES)
    source = {"provider": "stripe", "secret": "whsec_bench", "fetch": "thin"}
    source |= {"api_key": "sk_test_bench", "api_base": api}
    config = Config.model_validate(
        {
            "store": f"sqlite:///{workdir / 'gateway.db'}",
            "rules": str(rules_dir),
            "sources": {"pay": source},
            "base_dir": workdir,
        }
    )
    store = Store(config.store_url)
    await store.open()
    now = datetime.now(UTC)
    await asyncio.gather(
        *(
            store.events.add(NewEvent("pay", "stripe", "t", f"d{n}", {}, body, now))
            for n, body in enumerate(bodies)
        )
    )
    worker = Worker(store, load_rules(rules_dir), config)
    collector.settle()  # as `gateway serve` does once started
    started = time.perf_counter()
    await worker.start()
    try:
        deadline = started + limit
        while await store.runs.count("succeeded") < len(bodies):
            if await store.runs.count("failed") or await store.runs.count("dead"):
                raise RuntimeError("a run failed: the bench measures nothing")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"not drained within {limit} s")
            await asyncio.sleep(0.01)
        return time.perf_counter() - started
    finally:
        await worker.stop()
        await store.close()


def main(argv: list[str]) -> int:
    parser = Arguments(__doc__, quick={"events": 100})
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse(argv)
    gateway_log.configure("warning")
    results: dict[str, Any] = {"events": args.events, "machine": platform.platform()}
    with serve_in_thread(stripe_api()) as api:
        for name, make in (("baseline", snapshot), ("thin", thin)):
            workdir = Path(tempfile.mkdtemp(prefix=f"bench-thin-{name}-"))
            try:
                bodies = [make(n) for n in range(args.events)]
                seconds = asyncio.run(drain(workdir, api, bodies, args.timeout))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            results[name] = {"seconds": round(seconds, 3), "per_s": round(args.events / seconds)}
            print(
                f"{name:9} {args.events} events in {seconds:.2f} s: {args.events / seconds:.0f}/s"
            )
    results["ratio"] = round(results["thin"]["seconds"] / results["baseline"]["seconds"], 2)
    print(f"thin / baseline: {results['ratio']}x the time")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
