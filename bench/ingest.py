#!/usr/bin/env python3
"""Ingest throughput: the gateway's `POST /hooks/{source}` against a bare Starlette app.

Both targets run in the same invocation, on the same machine, under the same load:

  bare     bench/bare.py: one POST route that reads the body and answers 202
           (one uvicorn process, uvloop + httptools, no access log);
  gateway  `gateway serve` with one Shopify source and a SQLite store in a temp dir
           (verify HMAC, parse, insert with group commit, answer 202): all roles by
           default, as `gateway serve` starts (its worker routes each event to no rule);
           `--role ingest` for the door alone.

Each body is measured in the same run, bare then gateway: the 7 KB Shopify order and the
1 KB Shopify customer by default (results `bare`/`gateway`, then `bare-1k`/`gateway-1k`).

Load: wrk, 32 connections, 2 threads, a 2 s warm-up then --duration seconds, posting the real
Shopify order fixture with a `bench_event` field appended, a new one on every request, signed
in wrk (bench/wrk/post.lua): the gateway deduplicates Shopify deliveries by their body, so
every request is a new body and a new event.

With --floor, three more targets before the gateway, on the first body: bench/floor.py, the
least a door can do on the same stack, step by step: `floor-verify` (read and check the HMAC),
`floor-parse` (+ orjson and the dedup digest), `floor-store` (+ a group-committed SQLite insert
before the 202). Between floor-store and the gateway is what the gateway adds to the promise.

With --replicas N (PostgreSQL), two more targets in the same run: one gateway replica, then
N replicas on the same database, each behind the same loopback haproxy (one thread, round
robin, keep-alive to the replicas; installed via apt-get when missing). Their ratio is the
scaling of the replicas alone, the balancer's cost being in both.

Reported per target: req/s, p50/p99 latency, non-2xx count, resident memory of the server
process tree at start (VmRSS, ready, before the warm-up), its peak (VmHWM) and once the load
is over (VmRSS, the events settled), and the CPU each party used during the measured window,
in cores (gateway processes, haproxy, PostgreSQL's processes, wrk, the rest; `machine busy`
from /proc/stat, I/O wait excluded): on a small machine it shows who the cores went to. For
the gateway, the rows added to `events` are checked against the 2xx count.
Exit status 1 if the gateway answered anything but 2xx or the row count does not match;
the performance targets (gateway >= 0.35x bare req/s, p99 <= 15 ms) are reported, not enforced.

Usage:  bench/ingest [--duration 10] [--store sqlite|postgresql|both] [--replicas N]
                    [--role all|ingest|split|processes] [--body FILE]... [--floor]
                    [--json FILE]
        (re-executes itself under the repo's .venv python; needs `wrk`, installed via apt-get
        when missing)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import BENCH, REPO, VENV_PYTHON, Arguments, ensure_venv, write_json

Process = subprocess.Popen[bytes]

FIXTURES = REPO.parent / "shared" / "fixtures" / "webhooks" / "shopify"
DEFAULT_BODY = FIXTURES / "orders_create.json"  # 7,336 bytes
SMALL_BODY = FIXTURES / "customers_create.json"  # 1,061 bytes
LUA_SCRIPT = BENCH / "wrk" / "post.lua"

SOURCE = "shop"
SECRET = "shpss_test_gateway_secret"
CONNECTIONS = 32
THREADS = 2
WARMUP_SECONDS = 2
TARGET_RATIO = 0.35
TARGET_P99_MS = 15.0


# --------------------------------------------------------------------------- load generator


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing it with apt-get", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is required and could not be installed")
    return found


def run_wrk(wrk: str, url: str, seconds: int, body_file: Path, id_prefix: str) -> dict[str, Any]:
    """One wrk run; returns the figures post.lua's done() prints as JSON."""
    cmd = [
        wrk,
        "-t",
        str(THREADS),
        "-c",
        str(CONNECTIONS),
        "-d",
        f"{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(body_file),
        SECRET,
        id_prefix,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            stats = json.loads(line.removeprefix("BENCH_JSON "))
            seconds_run = stats["duration_us"] / 1e6
            stats["rps"] = stats["requests"] / seconds_run if seconds_run else 0.0
            result: dict[str, Any] = stats
            return result
    raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{out}")


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(cmd: list[str], log_file: Path, cwd: Path) -> Process:
    log = log_file.open("wb")
    return subprocess.Popen(
        cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_ready(url: str, proc: Process, log_file: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_file.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop_server(proc: Process) -> None:
    """SIGTERM the server's process group (uvicorn shuts down cleanly), SIGKILL if stuck."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def peak_rss_mb(pid: int) -> float:
    """Sum of VmHWM (peak resident set) over the server process and its children."""
    total_kb = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def rss_mb(pid: int) -> float:
    """Resident set now (VmRSS) of the server process and its children."""
    total_kb = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def loaded_io_stack(pid: int) -> str:
    """Which event loop and HTTP parser the server really loaded (from its memory maps)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "unknown"
    loop = "uvloop" if "/uvloop/" in maps else "asyncio"
    http = "httptools" if "/httptools/" in maps else "h11"
    return f"{loop}+{http}"


# --------------------------------------------------------------------------- stores
#
# A store backend gives the gateway a URL and lets the bench count stored events.
# `--store postgresql` belongs here: a `postgres_store()` returning a StoreBackend whose
# url points at a throwaway database and whose count_events queries it (e.g. via psql).


@dataclass
class StoreBackend:
    name: str
    url: str
    count_events: Callable[[], int]
    cleanup: Callable[[], None] = field(default=lambda: None)


def sqlite_store(workdir: Path) -> StoreBackend:
    path = workdir / "gateway.db"

    def count() -> int:
        if not path.exists():
            return 0
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
            try:
                rows: int = conn.execute("SELECT count(*) FROM events").fetchone()[0]
                return rows
            except sqlite3.OperationalError:  # table not created yet
                return 0

    return StoreBackend("sqlite", f"sqlite:///{path}", count)


def postgres_store(workdir: Path) -> StoreBackend:
    """A throwaway database on the local PostgreSQL (127.0.0.1:5432, trust auth), via psql."""
    name = f"gw_bench_{os.urandom(4).hex()}"
    server = os.environ.get("GATEWAY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")

    def psql(database: str, sql: str) -> str:
        return subprocess.run(
            ["psql", f"{server}/{database}", "-tAc", sql],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    psql("test", f"CREATE DATABASE {name}")

    def count() -> int:
        try:
            return int(psql(name, "SELECT count(*) FROM events") or 0)
        except subprocess.CalledProcessError:  # table not created yet
            return 0

    def cleanup() -> None:
        psql("test", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    url = server.replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    return StoreBackend("postgresql", url, count, cleanup)


STORES: dict[str, Callable[[Path], StoreBackend]] = {
    "sqlite": sqlite_store,
    "postgresql": postgres_store,
}


def settled_count(store: StoreBackend, quiet: float = 0.5, timeout: float = 15.0) -> int:
    """The event count once it has stopped moving (group commits in flight have landed)."""
    last, since = store.count_events(), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = store.count_events()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """What wrk posts to: one or more server processes, with haproxy in front if `balanced`."""

    name: str
    commands: list[list[str]]
    ports: list[int]
    ready_path: str
    store: StoreBackend | None = None
    balanced: bool = False
    body: Path = DEFAULT_BODY
    # The bare target measured with the same body in the same run: what the ratio is of.
    baseline: str = "bare"


def bare_target(port: int, body: Path = DEFAULT_BODY) -> Target:
    command = [
        str(VENV_PYTHON),
        "-m",
        "uvicorn",
        "bare:app",
        "--app-dir",
        str(BENCH),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return Target("bare", [command], [port], "/healthz", body=body)


FLOOR_LEVELS = ("verify", "verify,parse", "verify,parse,store")


def floor_target(port: int, steps: str, workdir: Path, body: Path) -> Target:
    """bench/floor.py with `steps`: the least a verified (, parsed, durable) ingest does."""
    target = bare_target(port, body)
    database = workdir / f"floor-{steps.count(',')}.db"
    command = target.commands[0]
    command[command.index("bare:app")] = "floor:app"
    target.commands = [["env", f"FLOOR_STEPS={steps}", f"FLOOR_DB={database}", *command]]
    target.name = "floor-" + steps.rsplit(",", 1)[-1]
    return target


def gateway_target(
    workdir: Path,
    store: StoreBackend,
    replicas: int = 1,
    balanced: bool = False,
    role: str = "ingest",
) -> Target:
    """`replicas` identical `gateway serve --role <role>` processes on one store (`all`: the
    default `gateway serve`, no --role)."""
    config = workdir / "gateway.yaml"
    config.write_text(
        f"store: {json.dumps(store.url)}\n"
        "host: 127.0.0.1\n"
        "sources:\n"
        f"  {SOURCE}: {{provider: shopify, secret: {json.dumps(SECRET)}}}\n"
    )
    (workdir / "rules").mkdir(exist_ok=True)  # no rules: this measures the door, not the work
    gateway = VENV_PYTHON.parent / "gateway"
    ports = [free_port() for _ in range(replicas)]
    roles = [] if role in ("all", "split") else ["--role", role]
    if role == "processes":  # `gateway serve --processes 2`: the worker forked beside the door
        roles = ["--processes", "2"]
    if role == "split":  # the door, posted to, and beside it the worker on the same store
        roles = ["--role", "ingest"]
        ports.append(free_port())
    commands = [
        [str(gateway), "serve", "--config", str(config), "--port", str(port), *roles]
        for port in ports
    ]
    if role == "split":
        commands[-1][-2:] = ["--role", "worker", "--role", "scheduler"]
    return Target("gateway", commands, ports, "/healthz", store, balanced)


# --------------------------------------------------------------------------- load balancer


def ensure_haproxy() -> str:
    found = shutil.which("haproxy")
    if not found:
        print("haproxy not found: installing it with apt-get", file=sys.stderr)
        subprocess.run(
            ["apt-get", "install", "-y", "haproxy"], check=False, stdout=subprocess.DEVNULL
        )
        found = shutil.which("haproxy")
    if not found:
        sys.exit("haproxy is required for --replicas and could not be installed")
    return found


def start_balancer(ports: list[int], workdir: Path, name: str) -> tuple[Process, int]:
    """haproxy on one thread, round robin over `ports`, keep-alive to the replicas."""
    front = free_port()
    servers = "\n".join(
        f"  server r{index} 127.0.0.1:{port} maxconn 64" for index, port in enumerate(ports)
    )
    config = workdir / f"{name}.haproxy.cfg"
    config.write_text(
        "global\n  nbthread 1\n  maxconn 4096\n"
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n"
        "  timeout server 30s\n  option http-keep-alive\n"
        f"frontend hooks\n  bind 127.0.0.1:{front}\n  default_backend replicas\n"
        f"backend replicas\n  balance roundrobin\n  http-reuse always\n{servers}\n"
    )
    proc = start_server(
        [ensure_haproxy(), "-db", "-f", str(config)], workdir / f"{name}.haproxy.log", cwd=workdir
    )
    return proc, front


# --------------------------------------------------------------------------- CPU accounting


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes so far (processes that already exited count 0)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class CpuShare:
    """Who used the machine's CPU during the measured window: servers, balancer, PostgreSQL,
    wrk (a waited child: its usage comes from RUSAGE_CHILDREN) and everything else."""

    def __init__(self, servers: list[int], balancer: list[int]) -> None:
        self.groups = {"servers": servers, "balancer": balancer}

    def _sample(self) -> dict[str, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open("/proc/stat") as stat:  # first line: aggregate jiffies of all CPUs
            jiffies = [int(v) for v in stat.readline().split()[1:]]
        busy = (sum(jiffies) - jiffies[3] - jiffies[4]) / os.sysconf("SC_CLK_TCK")
        sample = {name: cpu_seconds(tree_of(pids)) for name, pids in self.groups.items()}
        sample["postgresql"] = cpu_seconds(postgres_pids())
        sample["wrk"] = children.ru_utime + children.ru_stime
        sample["machine_busy"] = busy
        sample["wall"] = time.monotonic()
        return sample

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        wall = after["wall"] - self.before["wall"]
        share = {k: (after[k] - self.before[k]) / wall for k in after if k != "wall"}
        named = sum(v for k, v in share.items() if k != "machine_busy")
        share["other"] = max(0.0, share["machine_busy"] - named)
        return {k: round(v, 2) for k, v in share.items()}  # in cores (1.0 = one core busy)


def tree_of(pids: list[int]) -> list[int]:
    return [member for pid in pids for member in process_tree(pid)]


def bench_target(
    target: Target, wrk: str, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    log_file = workdir / f"{target.name}.log"
    procs: list[Process] = []
    balancer: Process | None = None
    try:
        for index, (command, port) in enumerate(zip(target.commands, target.ports, strict=True)):
            replica_log = log_file.with_suffix(f".{index}.log")
            procs.append(start_server(command, replica_log, cwd=REPO))
            wait_ready(f"http://127.0.0.1:{port}{target.ready_path}", procs[-1], replica_log)
        # Resident memory once started, before any request: imports, engines, threads.
        start_rss = sum(rss_mb(p.pid) for p in procs)
        port = target.ports[0]
        if target.balanced:
            balancer, port = start_balancer(target.ports, workdir, target.name)
            wait_ready(
                f"http://127.0.0.1:{port}{target.ready_path}",
                balancer,
                workdir / f"{target.name}.haproxy.log",
            )
        url = f"http://127.0.0.1:{port}/hooks/{SOURCE}"
        pids = " ".join(str(p.pid) for p in procs)
        print(
            f"[{target.name}] pid {pids} ready{' behind haproxy' if balancer else ''}; "
            f"warm-up {WARMUP_SECONDS} s",
            file=sys.stderr,
        )
        run_wrk(wrk, url, WARMUP_SECONDS, target.body, f"warm-{target.name}")
        before = settled_count(target.store) if target.store else None
        print(f"[{target.name}] measuring {args.duration} s", file=sys.stderr)
        share = CpuShare([p.pid for p in procs], [balancer.pid] if balancer else [])
        share.start()
        stats = run_wrk(wrk, url, args.duration, target.body, f"run-{target.name}")
        stats["cpu_cores"] = share.stop()
        stats["replicas"] = len(procs)
        stats["balanced"] = target.balanced
        stats["start_rss_mb"] = start_rss
        stats["peak_rss_mb"] = sum(peak_rss_mb(p.pid) for p in procs)
        stats["io_stack"] = loaded_io_stack(procs[0].pid)
        stats["body_bytes"] = target.body.stat().st_size
        stats["baseline"] = target.baseline
        if target.store and before is not None:
            stats["rows_added"] = settled_count(target.store) - before
        # Resident memory once the load is over and the last commits have landed (what the
        # process keeps: the memory target is this, idle after load).
        stats["idle_rss_mb"] = sum(rss_mb(p.pid) for p in procs)
        return stats
    finally:
        if balancer:
            stop_server(balancer)
        for proc in procs:
            stop_server(proc)


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        # Other work on the machine moves both targets; the ratio holds better than either.
        "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


TARGET_IDLE_RSS_MB = 80.0


def print_report(
    results: dict[str, dict[str, Any]], info: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    print(
        f"\nwrk: {CONNECTIONS} connections, {THREADS} threads, {args.duration} s "
        f"(after {WARMUP_SECONDS} s warm-up); store {args.store}; gateway role {args.role}\n"
    )
    print(
        "| target | body bytes | req/s | p50 ms | p99 ms | start RSS MB | peak RSS MB "
        "| idle RSS MB | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        lat = r["latency_us"]
        ratio = r["rps"] / results[r["baseline"]]["rps"]
        print(
            f"| {name} | {r['body_bytes']} | {r['rps']:.0f} | {lat['p50'] / 1000:.2f} "
            f"| {lat['p99'] / 1000:.2f} | {r['start_rss_mb']:.1f} | {r['peak_rss_mb']:.1f} "
            f"| {r['idle_rss_mb']:.1f} "
            f"| {ratio:.2f}x vs {r['baseline']} |"
        )
    print(f"\nCPU used during the measured window, in cores (the machine has {info['nproc']}):\n")
    print("| target | gateway processes | haproxy | PostgreSQL | wrk | other | machine busy |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        c = r["cpu_cores"]
        print(
            f"| {name} | {c['servers']:.2f} | {c['balancer']:.2f} | {c['postgresql']:.2f} "
            f"| {c['wrk']:.2f} | {c['other']:.2f} | {c['machine_busy']:.2f} |"
        )
    print(
        f"\nmachine: nproc {info['nproc']}, CPU {info['cpu']}, Python {info['python']}, "
        f"Linux {info['kernel']}, load average {info['load_average']}"
    )
    for name, r in results.items():
        errors = {k: v for k, v in r["errors"].items() if v and k != "status"}
        print(
            f"{name}: {r['io_stack']}; {r['requests']} responses, {r['ok_2xx']} 2xx "
            f"({r['duplicates']} duplicates), non-2xx {r['non_2xx']}, "
            f"socket errors {errors or 0}, unanswered at stop {r['sent'] - r['requests']}"
        )

    targets: dict[str, Any] = {}
    # The gateway on each body, against the bare target on the same body: `gateway` vs `bare`,
    # `gateway-1k` vs `bare-1k`.
    for name in [n for n, r in results.items() if n == "gateway" + r["baseline"][len("bare") :]]:
        gw = results[name]
        suffix = name.removeprefix("gateway")
        ratio = gw["rps"] / results[gw["baseline"]]["rps"]
        p99_ms = gw["latency_us"]["p99"] / 1000
        targets[f"ratio{suffix}"] = {"value": ratio, "target": TARGET_RATIO}
        targets[f"p99_ms{suffix}"] = {"value": p99_ms, "target": TARGET_P99_MS}
        targets[f"ratio{suffix}"]["met"] = ratio >= TARGET_RATIO
        targets[f"p99_ms{suffix}"]["met"] = p99_ms <= TARGET_P99_MS
    idle = max(r["idle_rss_mb"] for n, r in results.items() if n.startswith("gateway"))
    targets["idle_rss_mb"] = {
        "value": idle,
        "target": TARGET_IDLE_RSS_MB,
        "met": idle <= TARGET_IDLE_RSS_MB,
    }
    for label, t in targets.items():
        bound = ">=" if label.startswith("ratio") else "<="
        print(
            f"target {label} {bound} {t['target']}: {t['value']:.2f} -> "
            f"{'MET' if t['met'] else 'NOT MET'}"
        )
    return targets


def verify_gateway(label: str, stats: dict[str, Any]) -> list[str]:
    """The rows the run added must be exactly the new events wrk saw accepted.

    wrk abandons the requests still in flight when the duration ends; the gateway may commit
    those after wrk stopped counting, so up to `sent - requests` extra rows are accounted for.
    """
    new_events = stats["ok_2xx"] - stats["duplicates"]
    unanswered = stats["sent"] - stats["requests"]
    rows = stats["rows_added"]
    print(
        f"verify {label}: events rows added {rows}, wrk 2xx new events {new_events} "
        f"(+ up to {unanswered} unanswered at stop)"
    )
    problems = []
    if stats["non_2xx"] or stats["duplicates"]:
        problems.append(
            f"{label} answered {stats['non_2xx']} non-2xx and "
            f"{stats['duplicates']} duplicates (expected 0)"
        )
    if not new_events <= rows <= new_events + unanswered:
        problems.append(f"{label}: events rows {rows} != 2xx responses {new_events}")
    return problems


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Arguments(__doc__, quick={"duration": 3})
    parser.add_argument("--duration", type=int, default=10, help="seconds per target (10)")
    parser.add_argument(
        "--body",
        type=Path,
        action="append",
        help="payload to post; repeat for several, each against bare in the same run "
        f"(default: {DEFAULT_BODY.name}, then {SMALL_BODY.name})",
    )
    parser.add_argument(
        "--role",
        choices=["all", "ingest", "split", "processes"],
        default="all",
        help="the gateway's roles: all (the default `gateway serve`), ingest alone, split "
        "(an ingest process, posted to, and a worker+scheduler process on the same store), or "
        "processes (`gateway serve --processes 2`: the same split, the worker forked)",
    )
    parser.add_argument(
        "--store",
        choices=[*sorted(STORES), "both"],
        default="sqlite",
        help="gateway store backend; `both` runs SQLite and PostgreSQL in one "
        "run and reports PostgreSQL as a ratio of SQLite",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="also run 1 and N PostgreSQL replicas behind a loopback haproxy "
        "in the same run and report the scaling (N >= 2)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure bench/floor.py, the least a door can do, step by step (verify, "
        "+parse, +store), against bare with the first body, in the same run",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, db)")
    return parser.parse(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    wrk = ensure_wrk()
    bodies: list[Path] = args.body or [DEFAULT_BODY, SMALL_BODY]
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    names = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    stores = [STORES[name](workdir / name) for name in names]
    if args.replicas > 1 and "postgresql" not in names:
        stores.append(postgres_store(workdir / "postgresql"))
    problems: list[str] = []
    extra: list[StoreBackend] = []  # a fresh store of the first kind per further body
    try:
        results: dict[str, dict[str, Any]] = {}
        results["bare"] = bench_target(bare_target(free_port(), bodies[0]), wrk, args, workdir)
        if args.floor:
            for steps in FLOOR_LEVELS:
                floor = floor_target(free_port(), steps, workdir, bodies[0])
                results[floor.name] = bench_target(floor, wrk, args, workdir)
        for store in stores[: len(names)]:  # a PostgreSQL store added for --replicas comes last
            label = "gateway" if store is stores[0] else f"gateway-{store.name}"
            (workdir / store.name).mkdir(parents=True, exist_ok=True)
            gateway = gateway_target(workdir / store.name, store, role=args.role)
            gateway.name, gateway.body = label, bodies[0]
            results[label] = bench_target(gateway, wrk, args, workdir)
        for body in bodies[1:]:
            suffix = f"-{max(1, round(body.stat().st_size / 1024))}k"
            bare = bare_target(free_port(), body)
            bare.name = bare.baseline = f"bare{suffix}"
            results[bare.name] = bench_target(bare, wrk, args, workdir)
            folder = workdir / f"{names[0]}{suffix}"
            folder.mkdir(parents=True, exist_ok=True)
            extra.append(STORES[names[0]](folder))
            gateway = gateway_target(folder, extra[-1], role=args.role)
            gateway.name, gateway.body, gateway.baseline = f"gateway{suffix}", body, bare.name
            results[gateway.name] = bench_target(gateway, wrk, args, workdir)
        if args.replicas > 1:
            # The same PostgreSQL store behind the same haproxy, 1 replica then N: the balancer's
            # own cost is in both, so the ratio is the scaling of the replicas alone.
            postgres = next(store for store in stores if store.name == "postgresql")
            for count in (1, args.replicas):
                label = f"postgresql-{count}-behind-haproxy"
                (workdir / label).mkdir(parents=True, exist_ok=True)
                gateway = gateway_target(workdir / label, postgres, count, balanced=True)
                gateway.name, gateway.body = label, bodies[0]
                results[label] = bench_target(gateway, wrk, args, workdir)

        info = machine()
        targets = print_report(results, info, args)
        for label, stats in results.items():
            if "rows_added" in stats:
                problems += verify_gateway(label, stats)
        if "gateway-postgresql" in results:
            ratio = results["gateway-postgresql"]["rps"] / results["gateway"]["rps"]
            targets["postgresql_vs_sqlite"] = {"value": ratio, "target": 0.8, "met": ratio >= 0.8}
            print(
                f"target postgresql vs sqlite >= 0.8: {ratio:.2f} -> "
                f"{'MET' if ratio >= 0.8 else 'NOT MET'}"
            )
        if args.replicas > 1:
            one = results["postgresql-1-behind-haproxy"]["rps"]
            many = results[f"postgresql-{args.replicas}-behind-haproxy"]["rps"]
            targets["replica_scaling"] = {"value": many / one, "replicas": args.replicas}
            print(
                f"scaling: {args.replicas} PostgreSQL replicas behind haproxy give "
                f"{many / one:.2f}x of one ({many:.0f} vs {one:.0f} req/s)"
            )
        write_json(
            args.json,
            {
                "machine": info,
                "load": {
                    "tool": "wrk",
                    "connections": CONNECTIONS,
                    "threads": THREADS,
                    "duration_s": args.duration,
                    "warmup_s": WARMUP_SECONDS,
                    "body": str(bodies[0]),
                    "body_bytes": bodies[0].stat().st_size,
                    "bodies": {str(b): b.stat().st_size for b in bodies},
                },
                "store": args.store,
                "results": results,
                "targets": targets,
                "problems": problems,
            },
        )
    finally:
        for store in [*stores, *extra]:
            store.cleanup()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    ensure_venv(__file__)
    sys.exit(main(sys.argv[1:]))
