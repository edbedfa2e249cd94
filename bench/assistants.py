#!/usr/bin/env python3
"""Assistant throughput: N runs whose model takes a fixed time per turn, against the ideal.

A scripted model on loopback (the real `openai` client talks to it) answers every turn after
--latency seconds; each run takes two turns (a `log.record` call, then an answer). With the
worker's concurrency C, the ideal wall time is ceil(N / C) * 2 * latency. The bench stores N
events at once through the ingest writer, starts the worker, and reports the wall time until
every run succeeded, its ratio to the ideal, peak RSS sampled during the run (memory should
stay flat: the first and last quarter of samples are compared), and the CPU time the
gateway's process spent per run (what still compares on a machine shared with other work).

With --processes N the runs go through a real `gateway serve --processes N` (N - 1 worker
processes splitting the concurrency): the bench waits for it to be ready, stores the events
from its own process (their datagram wakes the workers), polls the store until every run
succeeded, and reports the CPU time of all the gateway's processes per run (from /proc).

Target (reported, not enforced): within 1.2x the ideal at concurrency 16, 1.3x at 64;
memory flat.

Usage:  bench/assistants [--runs 1000] [--latency 0.2] [--concurrency 64] [--processes N]
                         [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import Arguments, ensure_venv, write_json


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def model_app(latency: float) -> Any:
    """A Responses API model that takes `latency` per turn: a call first, then an answer."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def responses(request: Request) -> JSONResponse:
        body = await request.json()
        await asyncio.sleep(latency)
        answered = any(i.get("type") == "function_call_output" for i in body["input"])
        if answered:
            output = [
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "done", "annotations": []}],
                }
            ]
        else:
            output = [
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_1",
                    "name": "log__record",
                    "arguments": '{"message": "seen", "fields": null}',
                    "status": "completed",
                }
            ]
        return JSONResponse(
            {
                "id": "resp_1",
                "object": "response",
                "created_at": int(time.time()),
                "model": "bench-model",
                "status": "completed",
                "output": output,
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "usage": {
                    "input_tokens": 50,
                    "output_tokens": 10,
                    "total_tokens": 60,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                },
            }
        )

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": []})

    return Starlette(
        routes=[
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/models", models),
        ]
    )


def wait_ready(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def start_model(latency: float) -> tuple[subprocess.Popen[bytes], str]:
    """The model in its own process, as a remote model would be: in the gateway's process it
    would compete for the GIL and add its own latency to every turn."""
    from served import free_port

    port = free_port()
    model_proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-model", str(port), "--latency", str(latency)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/v1/models")
    return model_proc, url


RULE = {
    "name": "bench",
    "on": {"source": "bench", "event": "*"},
    "assistant": {"prompt": "Event {{ event.id }}", "tools": ["log.record"]},
}


def ideal_seconds(args: argparse.Namespace) -> float:
    return float(math.ceil(args.runs / args.concurrency) * 2 * args.latency)


def result(
    args: argparse.Namespace, elapsed: float, cpu: float, succeeded: int, **more: object
) -> dict[str, object]:
    ideal = ideal_seconds(args)
    return {
        "runs": args.runs,
        "succeeded": succeeded,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "processes": args.processes,
        "elapsed_s": round(elapsed, 2),
        "ideal_s": round(ideal, 2),
        "ratio_to_ideal": round(elapsed / ideal, 3),
        # What holds on a shared machine: the gateway's CPU per run, whatever the wall time.
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_run": round(cpu * 1000 / args.runs, 2),
        "load_average": os.getloadavg()[0],
        **more,
    }


def bench_served(args: argparse.Namespace) -> dict[str, object]:
    """The runs through `gateway serve --processes N`, timed from storing the events (the
    bench's own store already open) to the last run's success."""
    from served import GatewayProcesses

    model_proc, url = start_model(args.latency)
    workdir = Path(tempfile.mkdtemp(prefix="bench-assistants-"))
    print(f"store: {workdir / 'gateway.db'}", file=sys.stderr)
    document = {
        "models": {"default": {"api": "responses", "base_url": f"{url}/v1", "model": "m"}},
        "worker": {"concurrency": args.concurrency},
    }
    try:
        with GatewayProcesses(workdir, document, [RULE], args.processes) as gateway:
            cpu_started = gateway.cpu_seconds()
            succeeded, elapsed = asyncio.run(store_and_wait(gateway.store_url, args.runs))
            used = [b - a for a, b in zip(cpu_started, gateway.cpu_seconds(), strict=True)]
            rss = gateway.rss_mb()
            span = gateway.run_span()
    finally:
        model_proc.terminate()
        model_proc.wait()
    # The span leaves out storing the events from outside and what comes before the first
    # run: nearer what the in-process bench (events stored before its clock) measures.
    span_ratio = round(span / ideal_seconds(args), 3)
    return result(
        args,
        elapsed,
        sum(used),
        succeeded,
        # Each process's share of a core over the run: near 1.0, that process is the limit.
        cores_by_process=[round(cpu / elapsed, 2) for cpu in used],
        rss_mb_by_process=rss,
        runs_span_s=round(span, 2),
        span_ratio_to_ideal=span_ratio,
    )


async def store_and_wait(store_url: str, count: int) -> tuple[int, float]:
    """Store `count` events (a datagram wakes the gateway's workers), and wait until as many
    runs succeeded, looking every 20 ms: how many, and the seconds from the first event's
    store to the last run's success. Opening the bench's own store comes before the clock:
    the in-process bench's clock starts after its store is open too."""
    import orjson

    from gateway.store import NewEvent, Store

    store = Store(store_url)
    await store.open(migrate=False)
    notifier = store.wake_ups()
    store.events.on_commit(notifier.notify_soon)
    now = datetime.now(UTC)
    started = time.perf_counter()
    await asyncio.gather(
        *(
            store.events.add(
                NewEvent("bench", "generic", "tick", f"d{n}", {}, orjson.dumps({"n": n}), now)
            )
            for n in range(count)
        )
    )
    succeeded = 0
    while succeeded < count:
        await asyncio.sleep(0.02)
        succeeded = await store.runs.count("succeeded")
    elapsed = time.perf_counter() - started
    await notifier.stop()
    await store.close()
    return succeeded, elapsed


async def bench(args: argparse.Namespace) -> dict[str, object]:
    import orjson

    from gateway import collector, log
    from gateway.assistant.runner import AssistantRunner
    from gateway.config import Config
    from gateway.rules.loader import RuleSet
    from gateway.rules.model import Rule
    from gateway.store import NewEvent, Store
    from gateway.worker import Worker

    log.configure("warning", json=False)
    latency = args.latency
    model_proc, url = start_model(latency)
    workdir = Path(tempfile.mkdtemp(prefix="bench-assistants-"))
    print(f"store: {workdir / 'gateway.db'}", file=sys.stderr)
    try:
        config = Config.model_validate(
            {
                "store": f"sqlite:///{workdir / 'gateway.db'}",
                "models": {
                    "default": {
                        "api": "responses",
                        "base_url": f"{url}/v1",
                        "model": "bench-model",
                    }
                },
                "worker": {"concurrency": args.concurrency},
            }
        )
        rule = Rule.model_validate(RULE)
        store = Store(config.store_url)
        await store.open()
        now = datetime.now(UTC)
        await asyncio.gather(
            *(
                store.events.add(
                    NewEvent("bench", "generic", "tick", f"d{n}", {}, orjson.dumps({"n": n}), now)
                )
                for n in range(args.runs)
            )
        )
        worker = Worker(
            store, RuleSet([rule]), config, executors={"assistant": AssistantRunner.factory(config)}
        )
        finished = asyncio.Event()
        done = 0

        def ended(_run_id: int, status: str) -> None:
            nonlocal done
            done += 1
            if done == args.runs:
                finished.set()

        worker.on_run_end.append(ended)
        collector.settle()  # as `gateway serve` does once started
        samples: list[float] = []

        async def sample() -> None:
            while not finished.is_set():
                samples.append(rss_mb())
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        cpu_started = time.process_time()  # every thread of this process: the journal's too
        await worker.start()
        await finished.wait()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        await sampler
        await worker.stop()
        succeeded = await store.runs.count("succeeded")
        await store.close()
    finally:
        model_proc.terminate()
        model_proc.wait()

    quarter = max(1, len(samples) // 4)
    first = sum(samples[:quarter]) / quarter
    last = sum(samples[-quarter:]) / quarter
    return result(
        args,
        elapsed,
        cpu,
        succeeded,
        rss_first_quarter_mb=round(first, 1),
        rss_last_quarter_mb=round(last, 1),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )


def main() -> int:
    ensure_venv(__file__)
    parser = Arguments(__doc__, quick={"runs": 100})
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--processes", type=int, help="through `gateway serve --processes N` (N - 1 workers)"
    )
    parser.add_argument("--serve-model", type=int, help=argparse.SUPPRESS)
    args = parser.parse()
    if args.serve_model:
        import uvicorn

        uvicorn.run(
            model_app(args.latency),
            port=args.serve_model,
            log_level="warning",
            loop="uvloop",
            http="httptools",
            access_log=False,
        )
        return 0
    served = args.processes is not None
    result = bench_served(args) if served else asyncio.run(bench(args))
    memory = (
        f"{result['rss_mb_by_process']} MB; cores {result['cores_by_process']}; "
        f"runs' span {result['runs_span_s']} s "
        f"({result['span_ratio_to_ideal']}x)"
        if served
        else f"{result['rss_first_quarter_mb']} / {result['rss_last_quarter_mb']} MB"
    )
    print(
        "| runs | concurrency | processes | model latency | elapsed | ideal | ratio "
        "| CPU per run | load | RSS (first/last quarter, or by process at the end) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {result['runs']} | {result['concurrency']} | {args.processes or 'in-process'} "
        f"| {result['latency_s']} s | {result['elapsed_s']} s | {result['ideal_s']} s "
        f"| {result['ratio_to_ideal']}x | {result['cpu_ms_per_run']} ms "
        f"| {result['load_average']:.2f} | {memory} |"
    )
    # Issue 22: 1.2x at concurrency 16, 1.3x at 64 (more turns wait for the same core).
    target = 1.2 if args.concurrency <= 16 else 1.3
    met = result["ratio_to_ideal"] <= target  # type: ignore[operator]
    print(
        f"target ratio <= {target}: {'MET' if met else 'NOT MET'}; succeeded {result['succeeded']}"
    )
    write_json(args.json, result)
    return 0 if result["succeeded"] == result["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
