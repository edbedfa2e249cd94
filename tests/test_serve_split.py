"""The door and the worker as two processes on one SQLite file (`--role ingest` beside
`--role worker --role scheduler`): the worker is woken by the door's datagram, far sooner
than its fallback poll, and the door does not care whether a worker listens."""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from gateway.worker import FALLBACK_POLL_SECONDS
from tests.fixtures import requires_fixtures, shopify_order
from tests.process import GatewayProcess

pytestmark = [requires_fixtures, pytest.mark.slow]

RULE = """
- name: record
  on: {source: shop, event: orders/create}
  actions:
    - log.record: {message: "order {{ payload.id }}"}
"""
DOOR = ("--role", "ingest")
WORKER = ("--role", "worker", "--role", "scheduler")


def count(tmp_path: Path, sql: str) -> int:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return int(db.execute(sql).fetchone()[0])


def handled(tmp_path: Path) -> int:
    return count(tmp_path, "SELECT count(*) FROM runs WHERE status = 'succeeded'")


def seconds_to_handle(door: GatewayProcess, tmp_path: Path, delivery: str) -> float:
    """Post one order to the door; seconds from its 202 to its run's success."""
    before = handled(tmp_path)
    body, headers = shopify_order(delivery)
    assert httpx2.post(f"{door.url}/hooks/shop", content=body, headers=headers).status_code == 202
    accepted = time.monotonic()
    deadline = accepted + 10
    while handled(tmp_path) == before:
        assert time.monotonic() < deadline, "the event was never handled"
        time.sleep(0.002)
    return time.monotonic() - accepted


@pytest.fixture
def split(
    write_config: Callable[..., Path], tmp_path: Path
) -> Iterator[tuple[GatewayProcess, list[GatewayProcess]]]:
    """The door and its worker, started; the worker in a list, for a test to replace it."""
    config = write_config()
    (tmp_path / "rules" / "rules.yaml").write_text(RULE)
    door = GatewayProcess(config, None, *DOOR).start()
    workers = [GatewayProcess(config, None, *WORKER).start()]
    try:
        yield door, workers
    finally:
        for process in (*workers, door):
            process.stop()


def test_the_worker_process_handles_the_doors_event_well_under_its_poll_interval(
    split: tuple[GatewayProcess, list[GatewayProcess]], tmp_path: Path
) -> None:
    door, _ = split
    # Events found by the poll alone would wait half the interval in the median.
    waits = [seconds_to_handle(door, tmp_path, f"wake-{n}") for n in range(7)]
    assert statistics.median(waits) < FALLBACK_POLL_SECONDS / 4, waits


def test_the_door_takes_webhooks_with_its_worker_killed_and_the_next_worker_handles_them(
    split: tuple[GatewayProcess, list[GatewayProcess]], tmp_path: Path
) -> None:
    door, workers = split
    workers[0].kill()  # its socket file stays behind, bound by nobody
    assert len(list((tmp_path / "gateway.db.wake").iterdir())) == 1
    with httpx2.Client(base_url=door.url, timeout=10) as http:
        for n in range(20):
            body, headers = shopify_order(f"alone-{n}")
            assert http.post("/hooks/shop", content=body, headers=headers).status_code == 202
    assert count(tmp_path, "SELECT count(*) FROM events") == 20

    worker = GatewayProcess(door.config, None, *WORKER).start()
    workers.append(worker)
    deadline = time.monotonic() + 10
    while handled(tmp_path) < 20:
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.02)
    assert seconds_to_handle(door, tmp_path, "after") < FALLBACK_POLL_SECONDS / 2
    assert "notify.stale_socket_removed" in worker.output()
    assert "Traceback" not in door.output()
