"""`gateway serve --processes 2`: the door here, the worker and scheduler in a child process.

The two live and die together: SIGTERM drains both within the grace period, SIGHUP reloads
both, `kill -9` of either stops the other, and no acknowledged event is lost or handled twice.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from gateway import startup
from gateway.testing.downstream import CountingDownstream
from gateway.testing.server import serve_in_thread
from tests.fixtures import requires_fixtures, shopify_order
from tests.live import live_gateway
from tests.process import GatewayProcess
from tests.test_shutdown import RULE

pytestmark = [requires_fixtures, pytest.mark.slow]

EVENTS = 6
TWO = ("--processes", "2")


@pytest.fixture
def downstream() -> Iterator[tuple[CountingDownstream, str]]:
    server = CountingDownstream()
    with serve_in_thread(server.app) as url:
        yield server, url


def start(
    write_config: Callable[..., Path], tmp_path: Path, url: str, grace: float = 15
) -> GatewayProcess:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "rules.yaml").write_text(RULE.replace("URL", url))
    config = write_config(
        handlers={"http": {"allow_hosts": ["127.0.0.1"], "timeout": 30}},
        shutdown_grace=grace,
    )
    return GatewayProcess(config, None, *TWO).start()


def worker_pid(gateway: GatewayProcess) -> int:
    assert gateway.proc is not None
    pid = gateway.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


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


def statuses(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return [row[0] for row in db.execute("SELECT status FROM runs ORDER BY id")]


def settle(gateway: GatewayProcess, tmp_path: Path, server: CountingDownstream) -> None:
    """Start the gateway again (two processes) until every run has succeeded; then each
    event has one run and one effect (a call cut off was repeated under its first key)."""
    server.delay = 0.0
    restarted = GatewayProcess(gateway.config, None, *TWO).start()
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


def wait_gone(pid: int, seconds: float) -> float:
    began = time.monotonic()
    while alive(pid):
        assert time.monotonic() - began < seconds, f"process {pid} still alive"
        time.sleep(0.05)
    return time.monotonic() - began


def test_sigterm_drains_both_processes_within_the_grace_period(
    write_config: Callable[..., Path], tmp_path: Path, downstream: tuple[CountingDownstream, str]
) -> None:
    server, url = downstream
    server.delay = 1.5
    gateway = start(write_config, tmp_path, url)
    child = worker_pid(gateway)
    post_events(gateway, server)

    assert gateway.proc is not None
    sent = time.monotonic()
    gateway.proc.terminate()
    # Uvicorn re-raises the signal once it has stopped: the exit status of any `gateway serve`.
    assert gateway.proc.wait(timeout=30) == -signal.SIGTERM
    assert time.monotonic() - sent >= 1.0, "the worker process did not wait for its calls"
    assert not alive(child)
    assert statuses(tmp_path) == ["succeeded"] * EVENTS  # journaled before exit

    settle(gateway, tmp_path, server)
    assert set(server.attempts.values()) == {1}


def test_kill_9_of_the_door_stops_the_worker_process_and_loses_nothing(
    write_config: Callable[..., Path], tmp_path: Path, downstream: tuple[CountingDownstream, str]
) -> None:
    server, url = downstream
    server.delay = 1.5
    gateway = start(write_config, tmp_path, url)
    child = worker_pid(gateway)
    post_events(gateway, server)

    gateway.kill()
    wait_gone(child, 15 + 5)  # it drains (grace 15 s) and exits
    assert "worker_process.parent_gone" in gateway.output()

    settle(gateway, tmp_path, server)
    assert set(server.attempts.values()) == {1}  # the calls in flight finished, none twice


def test_kill_9_of_the_worker_process_stops_the_door_non_zero_and_loses_nothing(
    write_config: Callable[..., Path], tmp_path: Path, downstream: tuple[CountingDownstream, str]
) -> None:
    server, url = downstream
    server.delay = 1.5
    gateway = start(write_config, tmp_path, url)
    post_events(gateway, server)

    os.kill(worker_pid(gateway), signal.SIGKILL)
    assert gateway.proc is not None
    assert gateway.proc.wait(timeout=20) == 1
    assert "worker_process.gone" in gateway.output()

    settle(gateway, tmp_path, server)  # the calls cut off resume once, under their keys


def test_sighup_reloads_the_rules_of_the_worker_process(
    write_config: Callable[..., Path], tmp_path: Path, downstream: tuple[CountingDownstream, str]
) -> None:
    server, url = downstream
    server.delay = 0.0
    gateway = start(write_config, tmp_path, url)
    try:
        reloaded = RULE.replace("URL", url).replace("name: notify", "name: reloaded")
        (tmp_path / "rules" / "rules.yaml").write_text(reloaded)
        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while gateway.output().count('"rules.reloaded"') < 2:  # the door's, the worker's
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


def test_a_door_that_cannot_open_its_store_leaves_no_worker_process_behind(
    write_config: Callable[..., Path],
) -> None:
    config = write_config()  # a new database, and no migrations allowed: the door cannot start
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), *TWO]
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
        assert alive(worker_pid(gateway))
    finally:
        gateway.stop()
