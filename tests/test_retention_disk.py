"""The disk floor: below it /readyz fails, webhooks are answered 503 (senders retry), and a
metric says so; above it again, everything is back. Free space is an injected probe."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from gateway import config as config_module
from gateway.app import create_app
from gateway.testing.server import serve_in_thread
from tests.fixtures import SIGNED_AT, shopify_order

FLOOR = 500 * 1024**2


@pytest.fixture
def free() -> list[int]:
    return [10 * 1024**3]


@pytest.fixture
def gateway(write_config: Callable[..., Path], free: list[int]) -> Iterator[httpx2.Client]:
    config = config_module.load(
        write_config(retention={"min_free_bytes": FLOOR}, admin_token="t" * 32), environ={}
    )
    app = create_app(
        config,
        clock=lambda: float(SIGNED_AT),
        roles=frozenset({"ingest"}),
        disk_probe=lambda path: free[0],
    )
    with serve_in_thread(app) as url, httpx2.Client(base_url=url, timeout=30) as client:
        yield client


def post(client: httpx2.Client, key: str) -> httpx2.Response:
    body, headers = shopify_order(key)
    return client.post("/hooks/shop", content=body, headers=headers)


def metric(client: httpx2.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def test_below_the_disk_floor_readyz_fails_and_webhooks_get_503(
    gateway: httpx2.Client, free: list[int]
) -> None:
    assert gateway.get("/readyz").status_code == 200
    assert post(gateway, "e1").status_code == 202

    free[0] = FLOOR - 1
    time.sleep(1.1)  # a reading is reused for a second

    ready = gateway.get("/readyz")
    assert ready.status_code == 503 and "disk" in ready.json()["status"]
    refused = post(gateway, "e2")
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert metric(gateway, "gateway_disk_below_floor") == 1
    assert metric(gateway, "gateway_disk_free_bytes") == FLOOR - 1


def test_above_the_floor_again_webhooks_are_taken(gateway: httpx2.Client, free: list[int]) -> None:
    free[0] = 1
    time.sleep(1.1)
    assert post(gateway, "e3").status_code == 503

    free[0] = FLOOR
    time.sleep(1.1)

    assert gateway.get("/readyz").status_code == 200
    assert post(gateway, "e3").status_code == 202
    assert metric(gateway, "gateway_disk_below_floor") == 0


def test_store_size_is_a_metric(gateway: httpx2.Client) -> None:
    post(gateway, "e4")
    assert metric(gateway, "gateway_store_bytes") > 0


def test_a_floor_of_zero_turns_the_watch_off(write_config: Callable[..., Path]) -> None:
    config = config_module.load(write_config(retention={"min_free_bytes": 0}), environ={})
    app = create_app(config, roles=frozenset({"ingest"}), disk_probe=lambda path: 0)
    with serve_in_thread(app) as url, httpx2.Client(base_url=url) as client:
        assert client.get("/readyz").status_code == 200


def test_the_dashboard_shows_store_size_and_free_disk(
    gateway: httpx2.Client, free: list[int]
) -> None:
    login = gateway.post("/ui/login", data={"token": "t" * 32, "next": "/ui/events"})
    # The session cookie is Secure: carried by hand over loopback HTTP.
    cookie = re.search(r"gateway_session=([^;]+)", login.headers["set-cookie"])
    assert cookie is not None
    free[0] = FLOOR - 1
    time.sleep(1.1)

    gateway.cookies.set("gateway_session", cookie[1])
    page = gateway.get("/ui/events")

    assert page.status_code == 200
    assert 'id="storage"' in page.text and "free on its disk" in page.text
    assert "BELOW THE FLOOR" in page.text
