"""Scale-out on PostgreSQL: several real `gateway serve` processes sharing one database.

Each test starts its replicas on a throwaway database (tests/postgres.py: skipped without a
server, failing in CI). Side effects go to a loopback service that records every request by
its Idempotency-Key, like an API that honours the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx2
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.store.notify import asyncpg_dsn
from gateway.testing.fake_llm import ScriptedModel, answer, call, delay
from gateway.testing.server import serve_in_thread
from tests.fixtures import load, requires_fixtures, shopify_order
from tests.postgres import ADMIN_URL, fresh_database_sync, server_to_myself
from tests.process import GatewayProcess

pytestmark = [requires_fixtures, pytest.mark.slow]

SECRET = "shpss_test_gateway_secret"
SOURCES = {
    "shop": {"provider": "shopify", "secret": SECRET},
    "shop2": {"provider": "shopify", "secret": SECRET},
}
FINISHED = ("succeeded", "failed", "dead", "cancelled")


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test's replicas, dropped afterwards."""
    with fresh_database_sync() as url:
        yield url


def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(fetch())


def scalar(url: str, sql: str, *args: Any) -> Any:
    return query(url, sql, *args)[0][0]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Effects:
    """A loopback API recording each request by Idempotency-Key; checks per-key ordering."""

    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    overlaps: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/effect", self.effect, methods=["POST"])])

    async def effect(self, request: Request) -> JSONResponse:
        body = await request.json()
        key = str(body.get("key", ""))
        self.in_flight[key] += 1
        if key and self.in_flight[key] > 1:
            self.overlaps.append(key)
        try:
            await asyncio.sleep(self.delay)
            idem = request.headers.get("idempotency-key", "")
            self.requests.append({"idem": idem, "run": int(idem.split(".")[0]), **body})
        finally:
            self.in_flight[key] -= 1
        return JSONResponse({"accepted": True})

    def keys(self) -> set[str]:
        return {r["idem"] for r in self.requests}

    def by_event(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for r in self.requests:
            found[str(r["event"])].add(r["idem"])
        return found


@pytest.fixture
def effects() -> Iterator[tuple[Effects, str]]:
    server = Effects()
    with serve_in_thread(server.app()) as url:
        yield server, url


def effect_rule(url: str, *, order_by: bool, source: str = "shop") -> dict[str, Any]:
    rule: dict[str, Any] = {
        "name": f"effect-{source}",
        "on": {"source": source, "event": "orders/create"},
        "actions": [
            {
                "http.request": {
                    "method": "POST",
                    "url": f"{url}/effect",
                    # `body`, not `json`: the rule checker wants `json_body`, the tool `json`.
                    "headers": {"Content-Type": "application/json"},
                    "body": '{"event": "{{ event.delivery_id }}", "key": "{{ payload.test_key }}"}',
                }
            }
        ],
    }
    if order_by:
        rule["order_by"] = "{{ payload.test_key }}"
    return rule


def configure(
    tmp_path: Path,
    store: str,
    rules: list[dict[str, Any]],
    *,
    lease: float = 30,
    **extra: Any,
) -> Path:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    document = {
        "store": store,
        "sources": SOURCES,
        "rules": str(tmp_path / "rules"),
        "handlers": {"http": {"allow_hosts": ["127.0.0.1"]}},
        "worker": {"lease_seconds": lease, "backoff_base": 0.2, "max_attempts": 20},
        **extra,
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def upgrade(config: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "db", "upgrade", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@contextlib.contextmanager
def replicas(config: Path, count: int, *roles: str) -> Iterator[list[GatewayProcess]]:
    args = [a for role in (roles or ("all",)) for a in ("--role", role)]
    started: list[GatewayProcess] = []
    try:
        for _ in range(count):
            gateway = GatewayProcess(config, None, "--no-migrate", "--log-level", "warning", *args)
            started.append(gateway.start())
        yield started
    finally:
        for gateway in started:
            gateway.stop()


def post_all(
    urls: list[str],
    deliveries: list[tuple[str, bytes, dict[str, str]]],
    threads: int = 6,
) -> list[str]:
    """Post every (event id, body, headers), spread over `urls`; returns the acked event ids."""
    acked: list[str] = []
    lock = threading.Lock()
    problems: list[str] = []

    def client(worker: int) -> None:
        clients = [httpx2.Client(base_url=url, timeout=20) for url in urls]
        try:
            for n in range(worker, len(deliveries), threads):
                event_id, body, headers = deliveries[n]
                http = clients[n % len(clients)]
                response = http.post("/hooks/shop", content=body, headers=headers)
                if response.status_code != 202:
                    problems.append(f"{event_id}: {response.status_code} {response.text}")
                    continue
                with lock:
                    acked.append(event_id)
        finally:
            for http in clients:
                http.close()

    workers = [threading.Thread(target=client, args=(w,)) for w in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert not problems, problems[:5]
    return acked


def deliveries(prefix: str, count: int, keys: int) -> list[tuple[str, bytes, dict[str, str]]]:
    found = []
    for n in range(count):
        event_id = f"{prefix}-{n}"
        found.append((event_id, *shopify_order(event_id, test_key=f"k{n % keys}")))
    return found


def unfinished(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM runs WHERE status <> ALL($1::text[])", FINISHED))


# --------------------------------------------------------------------------- (a) three replicas

WEBHOOKS = 5000
KEYS = 20


# 5,000 webhooks through three replicas and PostgreSQL on two cores: 70-90 s alone, longer
# beside another test process (pytest-xdist), so past the suite's 120 s default.
@pytest.mark.timeout(300)
def test_three_replicas_store_and_act_on_each_webhook_once_in_key_order(
    tmp_path: Path, pg_url: str, effects: tuple[Effects, str]
) -> None:
    server, url = effects
    config = configure(tmp_path, pg_url, [effect_rule(url, order_by=True)])
    upgrade(config)
    planned = deliveries("order", WEBHOOKS, KEYS)
    started = time.monotonic()
    with replicas(config, 3) as gateways:
        acked = post_all([g.url for g in gateways], planned)
        ingested = time.monotonic() - started
        wait_for(lambda: len(server.keys()) >= WEBHOOKS and unfinished(pg_url) == 0, 240, "runs")
    took = time.monotonic() - started
    print(f"3 replicas: {WEBHOOKS} webhooks ingested in {ingested:.1f} s, acted on in {took:.1f} s")

    assert len(acked) == WEBHOOKS
    rows = query(pg_url, "SELECT delivery_id, count(*) AS n FROM events GROUP BY delivery_id")
    assert {r["delivery_id"] for r in rows} == {event_id for event_id, _, _ in planned}
    assert {r["n"] for r in rows} == {1}, "an event was stored twice"

    # Acted on once: one request per event, each with its own key, none repeated.
    assert len(server.requests) == WEBHOOKS, "a side effect was repeated"
    assert len(server.keys()) == WEBHOOKS
    assert {len(keys) for keys in server.by_event().values()} == {1}
    assert set(server.by_event()) == {event_id for event_id, _, _ in planned}
    statuses = query(pg_url, "SELECT status, count(*) AS n FROM runs GROUP BY status")
    assert {r["status"]: r["n"] for r in statuses} == {"succeeded": WEBHOOKS}

    # Ordering keys: runs of one key one at a time, in run order.
    assert not server.overlaps, f"runs of one key overlapped: {server.overlaps[:5]}"
    per_key: dict[str, list[int]] = defaultdict(list)
    for request in server.requests:
        per_key[request["key"]].append(request["run"])
    assert len(per_key) == KEYS
    for key, run_ids in per_key.items():
        assert run_ids == sorted(run_ids), f"key {key} ran out of order"


# --------------------------------------------------------------------------- (b) kill -9

HELD = 300
LEASE = 2.0
ASSISTANT_RULE = {
    "name": "warehouse",
    "on": {"source": "shop2", "event": "orders/create"},
    "assistant": {
        "instructions": "Tell the warehouse about each order, once.",
        "prompt": "Order {{ payload.name }}",
        "tools": ["http.request"],
    },
}


def test_a_killed_replicas_runs_are_finished_by_another_without_repeats(
    tmp_path: Path, pg_url: str, effects: tuple[Effects, str]
) -> None:
    server, url = effects
    server.delay = 0.2  # slow enough that every replica holds runs when one dies
    notify: dict[str, Any] = {"method": "POST", "url": f"{url}/effect", "headers": None}
    notify |= {"body": None, "json": {"event": "assistant", "key": ""}}
    with ScriptedModel(
        call("http__request", notify),
        # The second turn is held while its replica dies; another replica asks again.
        delay(8, then=answer("too late")),
        answer("Warehouse told."),
    ) as model:
        config = configure(
            tmp_path,
            pg_url,
            [effect_rule(url, order_by=False), ASSISTANT_RULE],
            lease=LEASE,
            models={"default": {"api": "responses", "base_url": model.url, "model": "m"}},
        )
        upgrade(config)
        with replicas(config, 3) as gateways:
            planned = deliveries("held", HELD, 1)
            order = load("shopify", "orders_create")
            httpx2.post(
                f"{gateways[0].url}/hooks/shop2", content=order.body, headers=order.headers
            ).raise_for_status()
            wait_for(lambda: len(model.requests) >= 2, 20, "the second model turn")
            [owner] = query(
                pg_url,
                "SELECT r.lease_owner FROM runs r WHERE r.rule = 'warehouse'",
            )
            victim = next(g for g in gateways if f":{g.proc.pid}:" in str(owner[0]))  # type: ignore[union-attr]

            def held() -> list[Any]:
                return query(
                    pg_url,
                    "SELECT id FROM runs WHERE status = 'running' AND lease_owner = $1",
                    owner[0],
                )

            acked = post_all([g.url for g in gateways], planned)
            # With enough slots the other replicas alone can make the first 30 calls: wait
            # for the one that dies to hold some of these runs too.
            wait_for(lambda: len(server.requests) >= 30 and len(held()) >= 2, 20, "runs in flight")
            held_runs = held()
            victim.kill()
            killed_at = time.monotonic()
            wait_for(lambda: unfinished(pg_url) == 0, 40, "the dead replica's runs")
            recovered = time.monotonic() - killed_at

    print(
        f"kill -9: {len(held_runs)} runs held by the dead replica, all done {recovered:.1f} s later"
    )
    assert len(held_runs) >= 2, "the killed replica held only the assistant run"
    assert len(acked) == HELD
    assert scalar(pg_url, "SELECT count(*) FROM events") == HELD + 1, "an event was lost"
    statuses = query(pg_url, "SELECT status, count(*) AS n FROM runs GROUP BY status")
    assert {r["status"]: r["n"] for r in statuses} == {"succeeded": HELD + 1}
    ids = [r["id"] for r in held_runs]
    taken_over = query(pg_url, "SELECT attempt FROM runs WHERE id = ANY($1::bigint[])", ids)
    assert max(r["attempt"] for r in taken_over) >= 2, "nobody took the dead replica's runs over"

    # One side effect per event: a run resumed by another replica re-sends its journaled
    # Idempotency-Key (the API dedupes it), never a new one; the assistant's call is not redone.
    assert {len(keys) for keys in server.by_event().values()} == {1}
    assert len(server.by_event()) == HELD + 1
    assert len([r for r in server.requests if r["event"] == "assistant"]) == 1
    assert len(model.requests) == 3, "a model turn was asked again or the run never resumed"


# --------------------------------------------------------------------------- (c) two schedulers


def test_two_schedulers_fire_one_event_per_period(tmp_path: Path, pg_url: str) -> None:
    rule = {
        "name": "tick",
        "schedule": {"every": "2s"},
        "actions": [{"log.record": {"message": "tick {{ event.fired_at }}"}}],
    }
    config = configure(tmp_path, pg_url, [rule])
    upgrade(config)
    with replicas(config, 2, "scheduler", "worker"):
        began = time.time()
        time.sleep(7)
        ended = time.time()
        wait_for(lambda: unfinished(pg_url) == 0, 10, "the tick runs")
    # A firing stored just before the replicas stopped is routed at the next start (stored
    # events are never lost): a worker-only replica routes and runs what is left.
    with replicas(config, 1, "worker"):
        pending = "SELECT count(*) FROM event_status WHERE status = 'pending'"
        wait_for(lambda: scalar(pg_url, pending) == 0 and unfinished(pg_url) == 0, 20, "the rest")
    rows = query(
        pg_url,
        "SELECT delivery_id, count(*) AS n FROM events WHERE source = 'schedule' GROUP BY 1",
    )
    fired = sorted(r["delivery_id"].split("@", 1)[1] for r in rows)
    assert {r["n"] for r in rows} == {1}
    # Every period while both ran fired exactly once: ~7 s / 2 s, consecutive fire times.
    assert len(fired) >= 3, fired
    stamps = [time_of(stamp) for stamp in fired]
    assert all(b - a == pytest.approx(2, abs=0.01) for a, b in itertools.pairwise(stamps))
    assert stamps[0] <= began + 2.5 and ended - 2.5 <= stamps[-1] <= ended + 2.5
    assert scalar(pg_url, "SELECT count(*) FROM runs") == len(fired), "one run per firing"


def time_of(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------- (d) PG restart


def pg_ctl(action: str) -> None:
    version = next(p.name for p in Path("/etc/postgresql").iterdir())
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


def pg_answers() -> bool:
    async def ping() -> bool:
        try:
            conn = await asyncpg.connect(ADMIN_URL, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    return asyncio.run(ping())


@pytest.fixture
def restartable_postgres() -> Iterator[None]:
    """The machine's PostgreSQL, to this test alone: other test processes wait."""
    if not Path("/etc/postgresql").is_dir():
        pytest.skip("no local PostgreSQL cluster to restart (pg_ctlcluster)")
    with server_to_myself(), restarted_if_stopped():
        yield


@contextlib.contextmanager
def restarted_if_stopped() -> Iterator[None]:
    try:
        yield
    finally:
        if not pg_answers():
            with contextlib.suppress(subprocess.SubprocessError):
                pg_ctl("start")
            wait_for(pg_answers, 30, "PostgreSQL to start again")


def test_postgres_restart_under_load_gives_503s_then_recovers_losing_nothing(
    restartable_postgres: None, tmp_path: Path, pg_url: str, effects: tuple[Effects, str]
) -> None:
    # restartable_postgres comes first: it takes the server before pg_url makes a database on it
    server, url = effects
    config = configure(tmp_path, pg_url, [effect_rule(url, order_by=False)], lease=LEASE)
    upgrade(config)
    acked: list[str] = []
    outcomes: dict[int | str, int] = defaultdict(int)
    stop = threading.Event()
    lock = threading.Lock()

    def client(gateway_url: str, worker: int) -> None:
        with httpx2.Client(base_url=gateway_url, timeout=20) as http:
            n = 0
            while not stop.is_set():
                event_id = f"pg-{worker}-{n}"
                n += 1
                body, headers = shopify_order(event_id, test_key="k0")
                try:
                    response = http.post("/hooks/shop", content=body, headers=headers)
                except httpx2.HTTPError as exc:
                    with lock:
                        outcomes[type(exc).__name__] += 1
                    continue
                with lock:
                    outcomes[response.status_code] += 1
                    if response.is_success:
                        acked.append(event_id)
                if not response.is_success:
                    time.sleep(0.02)

    with replicas(config, 1) as [gateway]:
        threads = [threading.Thread(target=client, args=(gateway.url, w)) for w in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.5)
            assert acked, "no webhook was stored before the restart"
            pg_ctl("stop")
            time.sleep(1.5)
            pg_ctl("start")
            restarted, down = time.monotonic(), len(acked)
            wait_for(lambda: len(acked) > down, 30, "a 2xx after the restart")
            recovered = time.monotonic() - restarted
            wait_for(lambda: len(acked) > down + 200, 30, "ingest at speed again")
            time.sleep(1)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        wait_for(lambda: unfinished(pg_url) == 0 and pending_events(pg_url) == 0, 40, "the work")

    print(f"PostgreSQL restart: outcomes {dict(outcomes)}; 2xx again {recovered:.1f} s after start")
    assert outcomes[503] > 0, "the gateway never said it could not store"
    assert set(outcomes) <= {202, 503}, dict(outcomes)
    stored = {r["delivery_id"] for r in query(pg_url, "SELECT delivery_id FROM events")}
    assert set(acked) <= stored, f"{len(set(acked) - stored)} acknowledged events were lost"
    # The worker recovered too: every stored event was acted on, once.
    assert set(server.by_event()) == stored
    assert {len(keys) for keys in server.by_event().values()} == {1}


def pending_events(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM event_status WHERE status = 'pending'"))


def test_connections_the_server_dropped_while_idle_are_replaced_without_a_503(
    tmp_path: Path, pg_url: str, effects: tuple[Effects, str]
) -> None:
    """A server that ends a gateway's idle connections (a restart between bursts, a pooler's
    idle timeout, pg_terminate_backend) costs the next webhooks nothing: the pool hands out a
    live connection, not a dropped one. The engine does not ping on every checkout (three round
    trips per ingest batch): a connection the server closed is known closed without one."""
    server, url = effects
    config = configure(tmp_path, pg_url, [effect_rule(url, order_by=False)])
    upgrade(config)
    # A door alone (the worker's own queries would find a dropped connection first, and
    # SQLAlchemy would then replace the whole pool), and a worker beside it.
    with replicas(config, 1, "ingest") as [gateway], replicas(config, 1, "worker"):
        acked = post_all([gateway.url], deliveries("before", 60, 6))
        wait_for(lambda: unfinished(pg_url) == 0 and pending_events(pg_url) == 0, 40, "the work")
        ended = query(
            pg_url,
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        assert len(ended) >= 2, "the gateway held fewer connections than expected"
        pids = [r["pid"] for r in ended]
        wait_for(
            lambda: (
                not scalar(
                    pg_url, "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
                )
            ),
            20,
            "the ended backends to exit",
        )
        time.sleep(0.2)  # the gateway's event loop reads each connection's end
        # post_all fails on any answer but 202
        acked += post_all([gateway.url], deliveries("after", 60, 6))
        wait_for(lambda: unfinished(pg_url) == 0 and pending_events(pg_url) == 0, 40, "the work")
    assert set(server.by_event()) == set(acked)
    assert {len(keys) for keys in server.by_event().values()} == {1}
