"""Crash durability: every webhook that got a 2xx survives `kill -9`, exactly once."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from tests.fixtures import requires_fixtures, shopify_order
from tests.process import GatewayProcess

pytestmark = [requires_fixtures, pytest.mark.slow]

PLANNED = 3000
CLIENTS = 8
KILL_AFTER = 1200


def test_acknowledged_webhooks_survive_kill_9_exactly_once(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = write_config(
        sources={"shop": {"provider": "shopify", "secret": "shpss_test_gateway_secret"}}
    )
    gateway = GatewayProcess(config).start()
    acked: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    def client(worker: int) -> None:
        with httpx2.Client(base_url=gateway.url, timeout=10) as http:
            for n in range(worker, PLANNED, CLIENTS):
                event_id = f"crash-{n}"
                body, headers = shopify_order(event_id)
                try:
                    response = http.post("/hooks/shop", content=body, headers=headers)
                except httpx2.HTTPError:
                    if killed.is_set():
                        return
                    raise
                if response.is_success:
                    with lock:
                        acked.append(event_id)
                        if len(acked) == KILL_AFTER:
                            killed.set()
                            gateway.kill()

    threads = [threading.Thread(target=client, args=(w,)) for w in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert killed.is_set(), "the gateway finished before it could be killed"

    restarted = GatewayProcess(config).start()  # must come up cleanly on the crashed database
    try:
        with sqlite3.connect(tmp_path / "gateway.db") as db:
            rows = db.execute("SELECT delivery_id, count(*) FROM events GROUP BY delivery_id")
            stored = dict(rows.fetchall())
        assert len(acked) >= KILL_AFTER
        assert set(acked) <= set(stored), "an acknowledged webhook was lost"
        assert set(stored.values()) == {1}
        body, headers = shopify_order(acked[0])
        again = httpx2.post(f"{restarted.url}/hooks/shop", content=body, headers=headers)
        assert again.json()["duplicate"] is True
    finally:
        restarted.stop()
