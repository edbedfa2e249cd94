"""`gateway serve --processes N`: the door here, the worker and scheduler in N - 1 children.

They live and die together: SIGTERM drains them all within the grace period, SIGHUP reloads
them all, `kill -9` of any stops the others, and no acknowledged event is lost or handled
twice; the scheduler fires once per tick, from one process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gateway import startup
from gateway.store.lock import WorkerAlreadyRunning, WorkerLock
from gateway.testing.downstream import CountingDownstream
from gateway.worker_process import shares, worker_roles
from tests.fixtures import requires_fixtures, shopify_order
from tests.live import live_gateway
from tests.process import GatewayProcess, wait_until
from tests.test_replicas import pg_url  # noqa: F401 (fixture)
from tests.test_replicas import query as pg_query
from tests.test_shutdown import RULE

pytestmark = [requires_fixtures, pytest.mark.slow]

EVENTS = 6
# With two worker processes, each claims half the events: both have calls in flight.
CONCURRENCY = {"concurrency": EVENTS}


def processes(count: int) -> tuple[str, str]:
    return ("--processes", str(count))


def start(
    write_config: Callable[..., Path],
    tmp_path: Path,
    url: str,
    count: int = 2,
    grace: float = 15,
    rule: str = RULE,
    **overrides: Any,
) -> GatewayProcess:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "rules.yaml").write_text(rule.replace("URL", url))
    config = write_config(
        handlers={"http": {"allow_hosts": ["127.0.0.1"], "timeout": 30}},
        shutdown_grace=grace,
        worker=CONCURRENCY,
        **overrides,
    )
    return GatewayProcess(config, None, *processes(count)).start()


def worker_pids(gateway: GatewayProcess, count: int = 1) -> list[int]:
    assert gateway.proc is not None
    pid = gateway.proc.pid
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    assert len(children) == count, children
    return children


def in_flight(
    write_config: Callable[..., Path],
    tmp_path: Path,
    downstream: tuple[CountingDownstream, str],
    count: int = 2,
    delay: float = 1.5,
) -> tuple[GatewayProcess, list[int]]:
    """A gateway of `count` processes whose EVENTS runs are all in flight (each call takes
    `delay` seconds downstream), and its worker processes' pids."""
    server, url = downstream
    server.delay = delay
    gateway = start(write_config, tmp_path, url, count)
    children = worker_pids(gateway, count - 1)
    post_events(gateway, server)
    return gateway, children


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def post_events(gateway: GatewayProcess, server: CountingDownstream) -> None:
    """Post EVENTS orders (each acknowledged) and wait until every call is in flight."""
    with httpx2.Client(base_url=gateway.url, timeout=10) as http:
        for n in range(EVENTS):
            body, headers = shopify_order(f"two-{n}")
            assert http.post("/hooks/shop", content=body, headers=headers).status_code == 202
    deadline = time.monotonic() + 20
    while sum(server.attempts.values()) < EVENTS:
        assert time.monotonic() < deadline, "the calls did not start"
        time.sleep(0.02)


def query(tmp_path: Path, sql: str) -> list[Any]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return [row[0] if len(row) == 1 else row for row in db.execute(sql)]


def statuses(tmp_path: Path) -> list[str]:
    return query(tmp_path, "SELECT status FROM runs ORDER BY id")


def settle(
    gateway: GatewayProcess, tmp_path: Path, server: CountingDownstream, count: int = 2
) -> None:
    """Start the gateway again (`count` processes) until every run has succeeded; then each
    event has one run and one effect (a call cut off was repeated under its first key)."""
    server.delay = 0.0
    restarted = GatewayProcess(gateway.config, None, *processes(count)).start()
    try:
        deadline = time.monotonic() + 30
        while statuses(tmp_path) != ["succeeded"] * EVENTS:
            assert time.monotonic() < deadline, restarted.output()
            time.sleep(0.1)
        time.sleep(0.5)  # and then nothing more happens
    finally:
        restarted.stop()
    assert statuses(tmp_path) == ["succeeded"] * EVENTS
    assert len(server.effects) == EVENTS


def free(database: Path) -> bool:
    """Whether the SQLite worker lock of `database` can be taken (then it is let go again);
    the kernel drops a dead process's lock a moment after the process is gone."""
    lock = WorkerLock(str(database))
    try:
        lock.acquire()
    except WorkerAlreadyRunning:
        return False
    lock.release()
    return True


def wait_gone(pid: int, seconds: float) -> float:
    began = time.monotonic()
    while alive(pid):
        assert time.monotonic() - began < seconds, f"process {pid} still alive"
        time.sleep(0.05)
    return time.monotonic() - began


@pytest.mark.parametrize("count", [2, 3])
def test_sigterm_drains_every_process_within_the_grace_period(
    write_config: Callable[..., Path],
    tmp_path: Path,
    downstream: tuple[CountingDownstream, str],
    count: int,
) -> None:
    gateway, children = in_flight(write_config, tmp_path, downstream, count)

    assert gateway.proc is not None
    sent = time.monotonic()
    gateway.proc.terminate()
    # Uvicorn re-raises the signal once it has stopped: the exit status of any `gateway serve`.
    assert gateway.proc.wait(timeout=30) == -signal.SIGTERM
    assert time.monotonic() - sent >= 1.0, "the worker processes did not wait for their calls"
    assert not any(alive(child) for child in children)
    assert statuses(tmp_path) == ["succeeded"] * EVENTS  # journaled before exit

    server, _ = downstream
    settle(gateway, tmp_path, server, count)
    assert set(server.attempts.values()) == {1}


def test_kill_9_of_the_door_stops_the_worker_process_and_loses_nothing(
    write_config: Callable[..., Path], tmp_path: Path, downstream: tuple[CountingDownstream, str]
) -> None:
    gateway, [child] = in_flight(write_config, tmp_path, downstream)

    gateway.kill()
    # The worker lock the door took is the child's now: no second worker while it drains.
    assert not free(tmp_path / "gateway.db")
    wait_gone(child, 15 + 5)  # it drains (grace 15 s) and exits
    wait_until(lambda: free(tmp_path / "gateway.db"), timeout=5)  # and then it is free
    assert "worker_process.parent_gone" in gateway.output()

    server, _ = downstream
    settle(gateway, tmp_path, server)
    assert set(server.attempts.values()) == {1}  # the calls in flight finished, none twice


def test_a_gateway_restarted_right_after_a_kill_9_of_the_door_follows_its_worker_process(
    write_config: Callable[..., Path], tmp_path: Path, downstream: tuple[CountingDownstream, str]
) -> None:
    # Calls of 6 s: the worker process is still finishing them once the new gateway has
    # imported itself and looks at the lock (about 1.5 s).
    gateway, [child] = in_flight(write_config, tmp_path, downstream, delay=6.0)

    gateway.kill()
    # A supervisor starts it again at once, while the dead door's worker process still holds
    # the worker lock and finishes its calls: the new gateway waits for it, then starts.
    server, _ = downstream
    restarted = GatewayProcess(gateway.config, None, *processes(2)).start()
    try:
        assert not alive(child)
        assert "worker_lock.orphaned" in restarted.output()
        wait_until(lambda: statuses(tmp_path) == ["succeeded"] * EVENTS, timeout=30)
    finally:
        restarted.stop()
    assert set(server.attempts.values()) == {1}  # the calls in flight finished, none twice


def test_kill_9_of_the_worker_process_stops_the_door_non_zero_and_loses_nothing(
    write_config: Callable[..., Path], tmp_path: Path, downstream: tuple[CountingDownstream, str]
) -> None:
    gateway, [child] = in_flight(write_config, tmp_path, downstream)

    os.kill(child, signal.SIGKILL)
    assert gateway.proc is not None
    assert gateway.proc.wait(timeout=20) == 1
    assert "worker_process.gone" in gateway.output()

    settle(gateway, tmp_path, downstream[0])  # the calls cut off resume once, under their keys


def owners(tmp_path: Path) -> dict[int, list[int]]:
    """The runs each worker process holds, by pid (a lease owner is host:pid:token)."""
    held: dict[int, list[int]] = {}
    for run_id, owner in query(tmp_path, "SELECT id, lease_owner FROM runs ORDER BY id"):
        held.setdefault(int(owner.split(":")[1]), []).append(run_id)
    return held


@pytest.mark.parametrize("victim", [0, 1])
def test_kill_9_of_one_of_two_worker_processes_handles_each_event_once(
    write_config: Callable[..., Path],
    tmp_path: Path,
    downstream: tuple[CountingDownstream, str],
    victim: int,
) -> None:
    gateway, children = in_flight(write_config, tmp_path, downstream, 3)
    held = owners(tmp_path)
    assert sorted(held) == sorted(children)  # each worker process has calls in flight
    killed, survivor = children[victim], children[1 - victim]

    os.kill(killed, signal.SIGKILL)
    assert gateway.proc is not None
    assert gateway.proc.wait(timeout=30) == 1
    assert "worker_process.gone" in gateway.output()
    assert not alive(survivor)
    # The survivor drained: its calls finished once; the killed one's runs are still running.
    server, _ = downstream
    assert [statuses(tmp_path)[n - 1] for n in held[survivor]] == ["succeeded"] * 3

    settle(gateway, tmp_path, server, 3)  # the killed one's calls resume once, same keys
    assert sorted(server.effects) == sorted(set(server.effects))
    assert {server.attempts[key] for key in server.attempts} <= {1, 2}


TICK = """
- name: tick
  schedule: {every: 1s}
  actions:
    - http.request: {method: POST, url: "URL/effect", json: {at: "{{ payload.fired_at }}"}}
"""


def test_the_scheduler_fires_once_per_tick_with_two_worker_processes(
    write_config: Callable[..., Path], tmp_path: Path, downstream: tuple[CountingDownstream, str]
) -> None:
    server, url = downstream
    gateway = start(write_config, tmp_path, url, 3, rule=TICK)
    try:
        worker_pids(gateway, 2)
        deadline = time.monotonic() + 20
        while len(server.effects) < 3:
            assert time.monotonic() < deadline, gateway.output()
            time.sleep(0.05)
    finally:
        gateway.stop()
    lines = [json.loads(line) for line in gateway.output().splitlines() if line.startswith("{")]
    started = [line for line in lines if line.get("event") == "scheduler.started"]
    fired = [line for line in lines if line.get("event") == "scheduler.fired"]
    assert len(started) == 1
    assert [line["duplicate"] for line in fired] == [False] * len(fired)
    ticks = query(tmp_path, "SELECT COUNT(*) FROM events WHERE source = 'schedule'")
    assert ticks == [len(fired)]
    assert query(tmp_path, "SELECT COUNT(*) FROM runs WHERE rule = 'tick'") == ticks
    assert len(server.effects) == ticks[0]  # one effect per tick, each made once
    assert set(server.attempts.values()) == {1}


@pytest.mark.parametrize("count", [2, 3])
def test_sighup_reloads_the_rules_of_every_worker_process(
    write_config: Callable[..., Path],
    tmp_path: Path,
    downstream: tuple[CountingDownstream, str],
    count: int,
) -> None:
    server, url = downstream
    gateway = start(write_config, tmp_path, url, count)
    try:
        reloaded = RULE.replace("URL", url).replace("name: notify", "name: reloaded")
        (tmp_path / "rules" / "rules.yaml").write_text(reloaded)
        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while gateway.output().count('"rules.reloaded"') < count:  # the door's, each worker's
            assert time.monotonic() < deadline, gateway.output()
            time.sleep(0.05)
        body, headers = shopify_order("after-reload")
        assert httpx2.post(f"{gateway.url}/hooks/shop", content=body, headers=headers).is_success
        while not server.effects:
            assert time.monotonic() < deadline, gateway.output()
            time.sleep(0.05)
        with sqlite3.connect(tmp_path / "gateway.db") as db:
            assert db.execute("SELECT rule FROM runs").fetchall() == [("reloaded",)]
    finally:
        gateway.stop()


class Gone:
    """A companion process that has died."""

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...

    def reload(self) -> None: ...

    def unready(self) -> str | None:
        return "worker process gone"


def test_readiness_fails_while_the_worker_process_is_gone(tmp_path: Path) -> None:
    with live_gateway(tmp_path, RULE.replace("URL", "http://127.0.0.1:9")) as gw:
        assert gw.client.get("/readyz").status_code == 200
        gw.app.state.gateway.companions.append(Gone())
        ready = gw.client.get("/readyz")
    assert (ready.status_code, ready.json()) == (503, {"status": "worker process gone"})


def test_two_processes_need_a_door_and_a_worker_to_split(
    write_config: Callable[..., Path],
) -> None:
    from gateway import config as config_module

    config = config_module.load(write_config(), environ={})
    assert startup.problems(config, {"ingest", "worker"}, processes=2) == []
    [problem] = startup.problems(config, {"ingest"}, processes=2)
    assert "nothing to split" in problem
    assert startup.split_roles(frozenset({"ingest", "worker", "scheduler"}), 2) == (
        frozenset({"ingest"}),
        frozenset({"worker", "scheduler"}),
    )


def test_more_worker_processes_split_the_concurrency_and_run_one_scheduler(
    write_config: Callable[..., Path],
) -> None:
    from gateway import config as config_module

    assert shares(64, 2) == [32, 32]
    assert shares(16, 3) == [6, 5, 5]
    behind = frozenset({"worker", "scheduler"})
    assert worker_roles(behind, 3) == [behind, {"worker"}, {"worker"}]
    config = config_module.load(write_config(worker={"concurrency": 2}), environ={})
    assert startup.problems(config, {"ingest", "worker", "scheduler"}, processes=3) == []
    [few] = startup.problems(config, {"ingest", "worker"}, processes=4)
    assert "worker.concurrency 2 is split among 3 worker processes" in few
    [alone] = startup.problems(config, {"ingest", "scheduler"}, processes=3)
    assert "more than one worker process needs the worker role" in alone


def test_a_door_that_cannot_open_its_store_leaves_no_worker_process_behind(
    write_config: Callable[..., Path],
) -> None:
    config = write_config()  # a new database, and no migrations allowed: the door cannot start
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), *processes(2)]
    done = subprocess.run(
        [*command, "--no-migrate", "--port", "0"], capture_output=True, timeout=60, check=False
    )
    assert done.returncode != 0
    said = re.search(r"worker process: pid (\d+)", done.stderr.decode())
    assert said is not None, done.stderr.decode()
    wait_gone(int(said.group(1)), 5)


def test_server_processes_in_the_config_starts_the_worker_process(
    write_config: Callable[..., Path],
) -> None:
    gateway = GatewayProcess(write_config(server={"processes": 2})).start()
    try:
        assert all(alive(pid) for pid in worker_pids(gateway))
    finally:
        gateway.stop()


@pytest.mark.parametrize("count", [2, 3])
def test_every_worker_process_is_woken_and_counted_on_the_doors_metrics(
    write_config: Callable[..., Path],
    tmp_path: Path,
    downstream: tuple[CountingDownstream, str],
    count: int,
) -> None:
    server, url = downstream
    gateway = start(write_config, tmp_path, url, count)
    try:
        # Each worker process listens for the door's wake-ups on a socket of its own.
        wake = tmp_path / "gateway.db.wake"
        assert sorted(os.listdir(wake)) == sorted(
            f"{pid}.sock" for pid in worker_pids(gateway, count - 1)
        )
        post_events(gateway, server)
        deadline = time.monotonic() + 20
        while statuses(tmp_path) != ["succeeded"] * EVENTS:
            assert time.monotonic() < deadline, gateway.output()
            time.sleep(0.05)
        text = httpx2.get(f"{gateway.url}/metrics").text
        said = re.search(r"metrics of every process: (\S+)", gateway.output())
        assert said is not None, gateway.output()
        assert Path(said.group(1)).is_dir()
    finally:
        gateway.stop()
    assert not Path(said.group(1)).exists()  # the door removed its private folder
    # Counted in the worker processes (each ran some of them), summed on the door's page.
    assert f'gateway_runs_total{{rule="notify",status="succeeded"}} {EVENTS}.0' in text, text
    assert f'gateway_webhook_requests_total{{source="shop",status="202"}} {EVENTS}.0' in text


def test_two_worker_processes_on_postgresql_handle_each_event_once(
    write_config: Callable[..., Path],
    tmp_path: Path,
    downstream: tuple[CountingDownstream, str],
    pg_url: str,  # noqa: F811
) -> None:
    server, url = downstream
    server.delay = 0.5  # each worker process holds some runs while the other claims
    gateway = start(write_config, tmp_path, url, 3, store=pg_url)
    owners: set[str] = set()  # the processes seen running runs (an owner is host:pid:...)
    try:
        post_events(gateway, server)
        deadline = time.monotonic() + 30
        while len(pg_query(pg_url, "SELECT id FROM runs WHERE status = 'succeeded'")) < EVENTS:
            assert time.monotonic() < deadline, gateway.output()
            running = pg_query(pg_url, "SELECT lease_owner FROM runs WHERE status = 'running'")
            owners |= {row["lease_owner"].split(":")[1] for row in running}
            time.sleep(0.05)
        text = httpx2.get(f"{gateway.url}/metrics").text
    finally:
        gateway.stop()
    assert len(owners) == 2  # both worker processes ran some
    assert len(server.effects) == EVENTS
    assert set(server.attempts.values()) == {1}
    assert f'gateway_runs_total{{rule="notify",status="succeeded"}} {EVENTS}.0' in text
