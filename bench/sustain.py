#!/usr/bin/env python3
"""Sustained load: does the worker keep up with the door? The highest rate of signed webhooks
a gateway can take for a whole window without its backlog growing, against the door alone.

  ingest   `gateway serve --role ingest` (no worker), posted to as fast as --connections
           keep-alive connections go for --ingest-seconds: the door's rate, the baseline.
  sustain  `gateway serve` (all roles, one process; --split: an ingest process and a worker process
           on the same store; --processes: `gateway serve --processes 2`), a fresh SQLite store each
           time, one `log.record` rule on the Shopify source. Posts at a fixed rate for --duration
           seconds (open loop: request n is due at n / rate, over --connections connections) and
           samples the backlog every second (events not routed + runs not finished, read from the
           store file). A rate is sustained when the backlog grew by less than 2 % of the rate per
           second from the middle third of the window to the last (their means: one stalled second
           does not decide) or stayed under a quarter second of posts, never exceeded two seconds of
           posts in the last third, and the posts went out at >= 97 % of the rate. The search starts
           at 0.9x of the ingest rate; above a sustained rate it goes up, below one it tries the
           drain rate the backlog's growth implies, then bisects (--probes in all).
  latency  bench/drain's idle probe: 202 -> handler p50 (target <= 5 ms), in one process;
           and the same topology as the sustain probes, one order at a time, from its 202 to
           its run's success as read from the store file (across processes with --split or
           --processes).

Each probe also reports the CPU time (utime + stime from /proc) of each gateway process per
stored event; with --split or --processes the second figure is the worker's cost per run, the
steady measure on a shared machine. --rate R makes only one probe, at R posts/s, and prints it.
  capacity the CPU per event of the busiest probe (each gateway process, and this process as
           the load generator, which shares the cores) turned into the highest rate the machine
           could sustain at that cost (its cores; one core per gateway process, the GIL), as a
           fraction of the door alone: when it is under the target, no scheduling meets the
           target on this machine without cheaper events, more processes or more cores.
           Beside it, the write lock: how long the event writer and the journal each held
           SQLite's one write lock per event (gateway_store_write_seconds, from /metrics;
           the event writer's is its INSERT call, an upper bound), the highest rate one
           writer at a time allows, however many cores.

Target (reported, not enforced): highest sustained rate >= 0.9x the ingest rate of the same
run. The load generator is this process (uvloop, raw HTTP/1.1): it competes with the gateway
for the same cores in both measurements, so compare the ratio, not the rates, across machines.
Exit status 1 if a post was answered with anything but 202 or a probe lost an event.

Usage:  bench/sustain [--quick] [--duration 60] [--probes 4] [--split | --processes]
                      [--rate POSTS_PER_S] [--json FILE]
        (--quick: 10 s windows, 3 probes; re-executes itself under the repo's .venv python)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import VENV_PYTHON, Arguments, ensure_venv, write_json
from ingest import (
    DEFAULT_BODY,
    SECRET,
    SOURCE,
    Process,
    cpu_seconds,
    free_port,
    loaded_io_stack,
    process_tree,
    start_server,
    stop_server,
    wait_ready,
)

TARGET_RATIO = 0.9
TARGET_P50_MS = 5.0
# A sustained rate: backlog growth (middle third of the window to the last) under this share
# of the rate per second, backlog in the last third under this many seconds of posts, posts
# sent at no less than this share of the rate.
GROWTH_SHARE = 0.02
MAX_SECONDS = 2.0
# A backlog whose peak stays under this many seconds of posts is bounded whatever its trend:
# a few batches in flight, not a worker falling behind.
NOISE_SECONDS = 0.25
SENT_SHARE = 0.97
START_FRACTION = 0.9
RULES = """\
- name: sustain
  on: {source: shop, event: orders/create}
  actions:
    - log.record:
        message: "{{ event.type }} {{ event.delivery_id }}"
"""


# --------------------------------------------------------------------------- load generator


class Bodies:
    """Signed Shopify deliveries, each a new body (the gateway deduplicates by body)."""

    def __init__(self, fixture: Path, prefix: str) -> None:
        order = json.loads(fixture.read_text())
        order.pop("bench_event", None)
        text = json.dumps(order, separators=(",", ":"))
        self.head = text[:-1].encode() + b',"bench_event":"' + prefix.encode() + b"-"
        self.numbers = itertools.count()  # across runs: a warm-up's bodies are not posted again

    def request(self) -> bytes:
        body = self.head + str(next(self.numbers)).encode() + b'"}'
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
        return (
            f"POST /hooks/{SOURCE} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nX-Shopify-Topic: orders/create\r\n"
            "X-Shopify-Shop-Domain: bench.myshopify.com\r\n"
            f"X-Shopify-Hmac-Sha256: {base64.b64encode(digest).decode()}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body


@dataclass
class Posted:
    seconds: float = 0.0
    answered: int = 0
    accepted: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


async def post(port: int, bodies: Bodies, rate: float | None, seconds: float, conns: int) -> Posted:
    """Post for `seconds`: request n due at n / `rate` (open loop), or back to back (None)."""
    clock = time.perf_counter  # not loop.time(): uvloop's ticks in whole milliseconds
    start = clock() + 0.05
    end = start + seconds
    numbers = itertools.count()
    posted = Posted()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                n = next(numbers)
                due = start + n / rate if rate else clock()
                if due >= end:
                    return
                if (wait := due - clock()) > 0:
                    await asyncio.sleep(wait)
                writer.write(bodies.request())
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                posted.answered += 1
                posted.accepted += head[9:12] == b"202"
                posted.latencies_ms.append((clock() - due) * 1000)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(conns)))
    posted.seconds = max(clock(), end) - start if rate else clock() - start
    return posted


def run_posts(port: int, bodies: Bodies, rate: float | None, seconds: float, conns: int) -> Posted:
    try:
        import uvloop

        return uvloop.run(post(port, bodies, rate, seconds, conns))
    except ImportError:
        return asyncio.run(post(port, bodies, rate, seconds, conns))


# --------------------------------------------------------------------------- gateway


def gateway_config(workdir: Path) -> Path:
    (workdir / "rules").mkdir(parents=True)
    (workdir / "rules" / "rules.yaml").write_text(RULES)
    config = workdir / "gateway.yaml"
    config.write_text(
        f"store: sqlite:///{workdir / 'gateway.db'}\nhost: 127.0.0.1\n"
        f"sources:\n  {SOURCE}: {{provider: shopify, secret: {json.dumps(SECRET)}}}\n"
    )
    return config


def start_gateway(workdir: Path, roles: list[list[str]]) -> tuple[list[Process], int]:
    """One `gateway serve` per entry of `roles` (its --role flags); the first one's port."""
    procs, ports = start_gateways(workdir, roles)
    return procs, ports[0]


def start_gateways(workdir: Path, roles: list[list[str]]) -> tuple[list[Process], list[int]]:
    """One `gateway serve` per entry of `roles` (its --role flags), and each one's port."""
    config = gateway_config(workdir)
    gateway = str(VENV_PYTHON.parent / "gateway")
    procs: list[Process] = []
    ports: list[int] = []
    for index, flags in enumerate(roles):
        port_here = free_port()
        command = [gateway, "serve", "--config", str(config), "--port", str(port_here), *flags]
        log_file = workdir / f"gateway.{index}.log"
        procs.append(start_server(command, log_file, cwd=workdir))
        wait_ready(f"http://127.0.0.1:{port_here}/readyz", procs[-1], log_file)
        ports.append(port_here)
    return procs, ports


STATUS_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'event_status'"


def backlog(db: Path) -> tuple[int, int, int]:
    """(events not routed, runs not finished, events stored), read from the store file."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        # An event's status is in `event_status` since migration 0014 (in `events` before:
        # the bench measures a revision before it too, for an A/B).
        table = "event_status" if conn.execute(STATUS_TABLE).fetchone() else "events"
        row = conn.execute(
            f"SELECT (SELECT count(*) FROM {table} WHERE status = 'pending'),"
            " (SELECT count(*) FROM runs WHERE status IN ('pending', 'running')),"
            " (SELECT count(*) FROM events)"
        ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


class Sampler(threading.Thread):
    """The backlog once a second, while posting and after, until `stop`."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.samples: list[tuple[float, int, int]] = []
        self.done = threading.Event()
        self.started = time.monotonic()

    def run(self) -> None:
        while not self.done.wait(1.0):
            events, runs, _ = backlog(self.db)
            self.samples.append((round(time.monotonic() - self.started, 2), events, runs))


def growth(points: list[tuple[float, int]], seconds: float) -> tuple[float, int]:
    """How fast the backlog grew from the middle third of the window to the last (items per
    second, from their means), and its peak in the last third."""
    middle = [y for t, y in points if seconds / 3 <= t < 2 * seconds / 3]
    last = [y for t, y in points if t >= 2 * seconds / 3]
    if not middle or not last:
        return 0.0, max((y for _, y in points), default=0)
    rise = sum(last) / len(last) - sum(middle) / len(middle)
    return rise / (seconds / 3), max(last)


def gate_seconds(ports: list[int]) -> dict[str, float]:
    """Seconds each writer has held SQLite's write lock so far, from every gateway's /metrics
    (the door's has its worker processes', with --processes): gateway_store_write_seconds_sum,
    phase hold, summed."""
    text = ""
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text += answer.read().decode()
    held: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("gateway_store_write_seconds_sum{") and 'phase="hold"' in line:
            writer = line.split('writer="', 1)[1].split('"', 1)[0]
            held[writer] = held.get(writer, 0.0) + float(line.rsplit(" ", 1)[1])
    return held


def probe(rate: float, args: argparse.Namespace, workdir: Path, bodies: Bodies) -> dict[str, Any]:
    """Post at `rate` for --duration seconds; the backlog over time, and whether it stayed
    bounded; then how long the gateway took to finish what was left."""
    procs, ports = start_gateways(workdir, topology(args))
    port = ports[0]
    sampler = Sampler(workdir / "gateway.db")
    # Each gateway process (with --processes, the door then its forked worker), and its CPU.
    pids = [pid for proc in procs for pid in process_tree(proc.pid)]
    cpu = [cpu_seconds([pid]) for pid in pids]
    try:
        held = gate_seconds(ports)
        sampler.start()
        generated = time.process_time()  # this process: the load generator and the sampler
        posted = run_posts(port, bodies, rate, args.duration, args.connections)
        generated = time.process_time() - generated
        posting = [(t, e + r) for t, e, r in sampler.samples if t <= posted.seconds]
        cleared = time.monotonic()
        while sum(backlog(workdir / "gateway.db")[:2]) and time.monotonic() - cleared < 120:
            time.sleep(0.1)
        cleared_s = time.monotonic() - cleared
        cpu = [cpu_seconds([pid]) - before for pid, before in zip(pids, cpu, strict=True)]
        held = {w: s - held.get(w, 0.0) for w, s in gate_seconds(ports).items()}
        sampler.done.set()
        _, _, stored = backlog(workdir / "gateway.db")
    finally:
        for proc in procs:
            stop_server(proc)
    grew, peak = growth(posting, posted.seconds)
    sustained = (
        (grew <= GROWTH_SHARE * rate or peak <= NOISE_SECONDS * rate)
        and peak <= MAX_SECONDS * rate
        and posted.rate >= SENT_SHARE * rate
    )
    ordered = sorted(posted.latencies_ms) or [0.0]
    return {
        "rate": round(rate, 1),
        "posted_per_s": round(posted.rate, 1),
        "answered": posted.answered,
        "accepted": posted.accepted,
        "stored": stored,
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 2),
        "backlog": sampler.samples,
        "backlog_growth_per_s": round(grew, 1),
        "backlog_peak_last_third": peak,
        "cleared_after_s": round(cleared_s, 2),
        # CPU per stored event of each process (door first), posting and clearing the rest:
        # with a worker process, its figure is what the worker costs per run.
        "cpu_us_per_event": [round(c / max(1, stored) * 1e6) for c in cpu],
        # What posting cost this process (HMAC, HTTP), per post answered: its share of the
        # machine that the gateway did not get.
        "generator_us_per_post": round(generated / max(1, posted.answered) * 1e6),
        # How long each writer held SQLite's one write lock per stored event: the store's
        # share of a second that events cannot outgrow, whatever the cores (`capacity`).
        "gate_us_per_event": {w: round(s / max(1, stored) * 1e6) for w, s in held.items()},
        "sustained": sustained,
    }


def topology(args: argparse.Namespace) -> list[list[str]]:
    """The --role (or --processes) flags of each `gateway serve` of the sustain probes."""
    if args.split:
        return [["--role", "ingest"], ["--role", "worker"]]
    if args.processes:
        return [["--processes", "2"]]
    return [[]]


def idle_latency(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One order at a time through the probes' topology: ms from its 202 to its run's success,
    read from the store file (polled every 0.2 ms), whichever process ran it."""
    procs, port = start_gateway(workdir, topology(args))
    bodies = Bodies(args.body, "idle")
    db = sqlite3.connect(f"file:{workdir / 'gateway.db'}?mode=ro", uri=True, timeout=10)
    waits: list[float] = []
    warmup = 10
    try:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            reader = conn.makefile("rb")
            for n in range(warmup + args.samples):
                conn.sendall(bodies.request())
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                reader.read(length)
                answered = time.perf_counter()
                while (
                    db.execute("SELECT count(*) FROM runs WHERE status = 'succeeded'").fetchone()[0]
                    <= n
                ):
                    time.sleep(0.0002)
                if n >= warmup:
                    waits.append((time.perf_counter() - answered) * 1000)
                time.sleep(0.02)  # idle again
    finally:
        db.close()
        for proc in procs:
            stop_server(proc)
    waits.sort()
    return {
        "p50_ms": round(statistics.median(waits), 2),
        "p90_ms": round(waits[int(0.9 * (len(waits) - 1))], 2),
        "max_ms": round(waits[-1], 2),
    }


def ingest_rate(args: argparse.Namespace, workdir: Path, bodies: Bodies) -> dict[str, Any]:
    procs, port = start_gateway(workdir, [["--role", "ingest"]])
    try:
        run_posts(port, bodies, None, 1.0, args.connections)  # warm-up
        door_cpu, generated = cpu_seconds([procs[0].pid]), time.process_time()
        posted = run_posts(port, bodies, None, args.ingest_seconds, args.connections)
        door_cpu = cpu_seconds([procs[0].pid]) - door_cpu
        generated = time.process_time() - generated
        io_stack = loaded_io_stack(procs[0].pid)
    finally:
        for proc in procs:
            stop_server(proc)
    return {
        "per_s": round(posted.rate, 1),
        "answered": posted.answered,
        "accepted": posted.accepted,
        "io": io_stack,
        "cpu_us_per_request": round(door_cpu / max(1, posted.answered) * 1e6),
        "generator_us_per_post": round(generated / max(1, posted.answered) * 1e6),
    }


def capacity(door: dict[str, Any], probes: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest rate this machine could sustain at the CPU per event measured in the
    busiest probe (the gateway's processes and the load generator, which shares the cores;
    a process at most one core), as a fraction of the door alone: above the target,
    scheduling is what is left; below it, no scheduling reaches the target without cheaper
    events, more processes or more cores."""
    busiest = max(probes, key=lambda p: p["posted_per_s"])
    gateway_us = sum(busiest["cpu_us_per_event"])
    total_us = gateway_us + busiest["generator_us_per_post"]
    cores = os.cpu_count() or 1
    machine = cores * 1e6 / total_us if total_us else 0.0
    # A gateway process runs Python on one core at a time (the GIL; SQLite's fsync and the
    # kernel's share of a request are the little it spends beside it).
    process = min((1e6 / us for us in busiest["cpu_us_per_event"] if us), default=machine)
    # One writer at a time: the events' and the journal's holds of the write lock add up.
    gate_us = sum(busiest.get("gate_us_per_event", {}).values())
    gate = 1e6 / gate_us if gate_us else float("inf")
    ceiling = min(machine, process, gate)
    base = door["per_s"]
    return {
        "at_per_s": busiest["posted_per_s"],
        "gateway_us_per_event": busiest["cpu_us_per_event"],
        "generator_us_per_post": busiest["generator_us_per_post"],
        "cores": cores,
        "gate_us_per_event": busiest.get("gate_us_per_event", {}),
        "gate_per_s": round(gate) if gate_us else None,
        "bound": (
            "SQLite's write lock"
            if gate <= min(machine, process)
            else "one core per process"
            if process < machine
            else "the machine's cores"
        ),
        "ceiling_per_s": round(ceiling),
        "ceiling_ratio": round(ceiling / base, 3) if base else 0.0,
        # Cores the target rate would need at these costs.
        "cores_at_target": round(TARGET_RATIO * base * total_us / 1e6, 2),
    }


def search(base: float, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """Probe rates (fractions of `base`): up from a sustained one, down to the drain rate
    implied by a growing backlog, then halfway between the best sustained and worst not."""
    probes: list[dict[str, Any]] = []
    good, bad = 0.0, float("inf")
    fraction = START_FRACTION
    for index in range(args.probes):
        bodies = Bodies(args.body, f"p{index}")
        result = probe(fraction * base, args, workdir / f"probe-{index}", bodies)
        result["fraction"] = round(fraction, 3)
        probes.append(result)
        print(
            f"probe {index}: {result['rate']:.0f}/s ({fraction:.2f}x) posted "
            f"{result['posted_per_s']:.0f}/s, backlog growth {result['backlog_growth_per_s']}/s, "
            f"peak {result['backlog_peak_last_third']}: "
            f"{'sustained' if result['sustained'] else 'not'}; CPU per event by process "
            f"{', '.join(f'{us} us' for us in result['cpu_us_per_event'])}",
            file=sys.stderr,
        )
        if result["sustained"]:
            good = max(good, fraction)
            fraction = (good + bad) / 2 if bad < float("inf") else good + 0.1
        else:
            bad = min(bad, fraction)
            drained = max(0.0, result["posted_per_s"] - result["backlog_growth_per_s"]) / base
            fraction = 0.95 * drained if good == 0.0 and drained < bad else (good + bad) / 2
        if bad - good < 0.02:
            break
    return probes


# --------------------------------------------------------------------------- report


def parse_args(argv: list[str]) -> argparse.Namespace:
    quick = {"duration": 10.0, "ingest_seconds": 5.0, "probes": 3, "samples": 50}
    parser = Arguments(__doc__, quick=quick)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per probe")
    parser.add_argument("--ingest-seconds", type=float, default=10.0)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    topologies = parser.add_mutually_exclusive_group()
    topologies.add_argument("--split", action="store_true", help="door and worker, two serves")
    topologies.add_argument(
        "--processes", action="store_true", help="`gateway serve --processes 2`"
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="only one probe at this many posts/s, for its CPU per event (no search, no latency)",
    )
    parser.add_argument("--samples", type=int, default=200, help="idle latency samples")
    parser.add_argument("--body", type=Path, default=DEFAULT_BODY)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse(argv)
    if args.probes < 1:  # the search and the capacity line need one probe at least
        parser.error("--probes must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-sustain-"))
    load_before = os.getloadavg()
    if args.rate:
        try:
            result = probe(args.rate, args, workdir, Bodies(args.body, "rate"))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        result.pop("backlog")
        print(f"load average before: {load_before}; {json.dumps(result)}")
        return 0
    try:
        door = ingest_rate(args, workdir / "ingest", Bodies(args.body, "ingest"))
        probes = search(door["per_s"], args, workdir)
        from drain import latency  # bench/drain's idle probe, in this process

        from gateway import log as gateway_log  # importable once drain set the path

        gateway_log.configure("warning")  # as bench/drain: per-run info lines not counted

        (workdir / "latency").mkdir()
        idle = latency(workdir / "latency", args.samples)
        across = idle_latency(args, workdir / "idle")
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    best = max((p["rate"] for p in probes if p["sustained"]), default=0.0)
    room = capacity(door, probes)
    ratio = best / door["per_s"] if door["per_s"] else 0.0
    p50 = idle["after_202"]["p50_ms"]
    shape = "door + worker processes" if args.split else "one process, all roles"
    shape = "gateway serve --processes 2" if args.processes else shape
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), Python "
        f"{platform.python_version()}, load average {load_before[0]:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; server {door['io']}"
    )
    print(
        f"ingest   door alone (--role ingest): {door['per_s']:.0f} req/s, "
        f"{door['cpu_us_per_request']} us of CPU per request in the door, "
        f"{door['generator_us_per_post']} us in the load generator"
    )
    for p in probes:
        print(
            f"sustain  {shape}, {p['rate']:.0f}/s ({p['fraction']:.2f}x) for "
            f"{args.duration:g} s: posted {p['posted_per_s']:.0f}/s, p99 {p['p99_ms']} ms, "
            f"backlog growth {p['backlog_growth_per_s']}/s (worker ~"
            f"{p['posted_per_s'] - p['backlog_growth_per_s']:.0f}/s), peak "
            f"{p['backlog_peak_last_third']} in the last third, cleared "
            f"{p['cleared_after_s']} s after: {'sustained' if p['sustained'] else 'NOT sustained'}"
        )
    print(
        f"result   highest sustained rate {best:.0f}/s = {ratio:.2f}x of the door alone "
        f"(target >= {TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else 'MISSED'}); idle "
        f"202 -> handler p50 {p50} ms (target <= {TARGET_P50_MS:g}: "
        f"{'met' if p50 <= TARGET_P50_MS else 'MISSED'})"
    )
    costs = " + ".join(f"{us} us" for us in room["gateway_us_per_event"])
    print(
        f"capacity at {room['at_per_s']:.0f}/s: {costs} (gateway processes) + "
        f"{room['generator_us_per_post']} us (load generator) of CPU per event: "
        f"at most {room['ceiling_per_s']}/s ({room['bound']}, {room['cores']} cores) = "
        f"{room['ceiling_ratio']:.2f}x of the door alone; {TARGET_RATIO}x would need "
        f"{room['cores_at_target']} cores"
    )
    if room["gate_per_s"]:
        holds = " + ".join(f"{w} {us} us" for w, us in room["gate_us_per_event"].items())
        print(
            f"write lock at {room['at_per_s']:.0f}/s: {holds} held per event (SQLite's one "
            f"writer at a time): at most {room['gate_per_s']}/s = "
            f"{room['gate_per_s'] / door['per_s']:.2f}x of the door alone"
        )
    print(
        f"latency  {shape}, idle, 202 -> run succeeded (read from the store): p50 "
        f"{across['p50_ms']} ms, p90 {across['p90_ms']} ms, max {across['max_ms']} ms"
    )
    problems = [
        f"probe at {p['rate']:.0f}/s: {p['answered'] - p['accepted']} posts not accepted, "
        f"{p['accepted']} accepted vs {p['stored']} stored"
        for p in probes
        if p["answered"] != p["accepted"] or p["stored"] != p["accepted"]
    ]
    if args.json:
        figures = {
            "topology": shape,
            "idle_in_topology": across,
            "duration_s": args.duration,
            "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "ingest": door,
            "probes": probes,
            "sustained_per_s": best,
            "ratio": round(ratio, 3),
            "capacity": room,
            "latency": idle,
        }
        write_json(args.json, figures)
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    ensure_venv(__file__)
    sys.exit(main(sys.argv[1:]))
