#!/usr/bin/env python3
"""Chaos: does every acknowledged webhook get its side effect once, through kill -9 cycles and
a downstream outage? Re-run it to verify a change; it prints the counts, not a speed.

A loopback downstream (gateway.testing.downstream) counts each side effect by its
Idempotency-Key and by the event it names. One `gateway serve` on SQLite (or --replicas N on a
fresh PostgreSQL database) gets --events Shopify-signed orders from a few client threads at a
steady pace; meanwhile a replica is killed with SIGKILL and restarted --kills times, and the
downstream answers 503 for --outage seconds in the middle. Then every replica is started
again and the run waits until no run is unfinished.

Printed: sent / acknowledged (202) / stored events / side effects (keys) / missing (acked
events without an effect) / repeated, same key (a key's effect made again: the receiving
system must dedupe it) / repeated, different key (an event's effect under two keys: a real
duplicate) / dead runs. Exit 1 if anything is missing, repeated with a different key, or dead.

Usage:  bench/chaos [--events 2000] [--kills 3] [--outage 20] [--replicas 1]
                    [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test] [--json FILE]
        (re-executes itself under the repo's .venv python)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import Arguments, ensure_venv, write_json

SECRET = "shpss_test_gateway_secret"


ensure_venv(__file__)

import asyncpg  # type: ignore[import-untyped]  # noqa: E402
import httpx2  # noqa: E402
import yaml  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from gateway.config import SourceConfig  # noqa: E402
from gateway.ingest.provider import PROVIDERS  # noqa: E402
from gateway.store.notify import asyncpg_dsn  # noqa: E402
from gateway.testing.downstream import CountingDownstream  # noqa: E402
from gateway.testing.server import serve_in_thread  # noqa: E402

RULE = """\
- name: effect
  on: {source: shop, event: orders/create}
  actions:
    - http.request:
        method: POST
        url: "URL/effect"
        headers: {Content-Type: application/json}
        body: '{"event": "{{ event.delivery_id }}"}'
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    """One `gateway serve` process that can be killed and started again on its port."""

    def __init__(self, config: Path, workdir: Path, *extra: str) -> None:
        self.config, self.port, self.extra = config, free_port(), extra
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"gateway-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config)]
        command += ["--port", str(self.port), "--log-level", "warning", *self.extra]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx2.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"replica on {self.port} did not become ready; see {self.log}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


# Built once, before the client threads: the provider registry loads on first use.
SHOPIFY = PROVIDERS["shopify"](SourceConfig(provider="shopify", secret=SECRET))


def signed(event_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"id": event_id, "name": f"#{event_id}", "total_price": "10.00"}).encode()
    provider = SHOPIFY
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Webhook-Id": event_id,
    }
    return body, headers | provider.sign(body, headers, time.time())


def post(urls: list[str], count: int, seconds: float, acked: list[str]) -> None:
    """Post `count` events over about `seconds` from 4 threads; a refused or failed post is
    tried on the next replica, as a provider would redeliver it."""
    lock = threading.Lock()

    def client(worker: int) -> None:
        with httpx2.Client(timeout=10) as http:
            for n in range(worker, count, 4):
                event_id = f"chaos-{n}"
                body, headers = signed(event_id)
                for attempt in range(200):
                    url = urls[(n + attempt) % len(urls)]
                    try:
                        answer = http.post(f"{url}/hooks/shop", content=body, headers=headers)
                        if answer.status_code in (200, 202):
                            with lock:
                                acked.append(event_id)
                            break
                    except httpx2.HTTPError:
                        pass
                    time.sleep(0.1)
                time.sleep(seconds * 4 / count)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def counts(store: str, workdir: Path) -> dict[str, int]:
    """Stored events, unfinished and dead runs."""
    queries = {
        "stored": "SELECT count(*) FROM events",
        "unfinished": "SELECT count(*) FROM runs WHERE status NOT IN "
        "('succeeded', 'failed', 'dead', 'cancelled')",
        "dead": "SELECT count(*) FROM runs WHERE status IN ('dead', 'failed')",
    }
    if store.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(workdir / "gateway.db") as db:
            return {name: int(db.execute(sql).fetchone()[0]) for name, sql in queries.items()}

    async def fetch() -> dict[str, int]:
        conn = await asyncpg.connect(asyncpg_dsn(store))
        try:
            return {name: int(await conn.fetchval(sql)) for name, sql in queries.items()}
        finally:
            await conn.close()

    return asyncio.run(fetch())


def fresh_postgres(admin_url: str) -> str:
    name = f"chaos_{os.getpid()}_{int(time.time())}"

    async def create() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(admin_url))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    url = make_url(admin_url).set(database=name)
    return url.render_as_string(hide_password=False)


def main(argv: list[str]) -> int:
    quick = {"events": 200, "seconds": 10.0, "kills": 1, "outage": 4.0}
    parser = Arguments(__doc__, quick=quick)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60, help="how long posting takes")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--outage", type=float, default=20)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--postgres", help="an admin URL: runs on a fresh database there")
    args = parser.parse(argv)
    if args.replicas > 1 and not args.postgres:
        parser.error("several replicas need --postgres (SQLite has one worker per file)")

    workdir = Path(tempfile.mkdtemp(prefix="gateway-chaos-"))
    downstream = CountingDownstream()
    with serve_in_thread(downstream.app) as downstream_url:
        store = (
            fresh_postgres(args.postgres) if args.postgres else f"sqlite:///{workdir}/gateway.db"
        )
        (workdir / "rules").mkdir()
        (workdir / "rules" / "rules.yaml").write_text(RULE.replace("URL", downstream_url))
        config = workdir / "gateway.yaml"
        document: dict[str, Any] = {
            "store": store,
            "rules": str(workdir / "rules"),
            "sources": {"shop": {"provider": "shopify", "secret": SECRET}},
            "handlers": {"http": {"allow_hosts": ["127.0.0.1"]}},
            # The defaults (10 min cap) would outlast the outage too, but make the run long.
            "retry": {"backoff_max": "2s", "circuit": {"open_for": "1s", "open_max": "2s"}},
        }
        config.write_text(yaml.safe_dump(document, sort_keys=False))
        replicas = [Replica(config, workdir) for _ in range(args.replicas)]
        for replica in replicas:
            replica.start()

        acked: list[str] = []
        poster = threading.Thread(
            target=post, args=([r.url for r in replicas], args.events, args.seconds, acked)
        )
        started = time.monotonic()
        poster.start()
        pause = args.seconds / (args.kills + 2)
        for cycle in range(args.kills):
            time.sleep(pause)
            if cycle == args.kills // 2:
                downstream.outage(args.outage)
                print(f"{time.monotonic() - started:6.1f} s  downstream down for {args.outage} s")
            victim = replicas[cycle % len(replicas)]
            victim.kill()
            print(f"{time.monotonic() - started:6.1f} s  kill -9 replica :{victim.port}")
            time.sleep(1.0)
            victim.start()
        poster.join()
        print(f"{time.monotonic() - started:6.1f} s  posting done; waiting for the runs")
        deadline = time.monotonic() + max(300, args.outage * 3)
        while (found := counts(store, workdir))["unfinished"] and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1.0)
        for replica in replicas:
            replica.stop()

    by_event = downstream.keys_by_event
    report = {
        "sent": args.events,
        "acknowledged": len(set(acked)),
        "stored": found["stored"],
        "side effects": len(downstream.effects),
        "missing": len(set(acked) - set(by_event)),
        "repeated, same key": sum(1 for n in downstream.effects.values() if n > 1),
        "repeated, different key": sum(1 for keys in by_event.values() if len(keys) > 1),
        "dead": found["dead"],
        "unfinished": found["unfinished"],
        "refused during the outage": downstream.refused,
    }
    for name, value in report.items():
        print(f"{name:>28}: {value:,}")
    write_json(args.json, report)
    bad = report["missing"] or report["repeated, different key"] or report["dead"]
    bad = bad or report["acknowledged"] < args.events  # a client gave up: see its traceback
    return 1 if bad or report["unfinished"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
