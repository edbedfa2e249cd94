"""Graceful shutdown of a real `gateway serve`: SIGTERM lets calls in flight finish within the
grace period (no call is made twice), and a call longer than it resumes once, same key."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from gateway.testing.downstream import CountingDownstream
from tests.fixtures import requires_fixtures, shopify_order
from tests.live import live_gateway
from tests.process import GatewayProcess

pytestmark = [requires_fixtures, pytest.mark.slow]

RULE = """
- name: notify
  on: {source: shop, event: orders/create}
  actions:
    - http.request: {method: POST, url: "URL/effect", json: {order: "{{ payload.id }}"}}
"""
EVENTS = 6


def start(
    write_config: Callable[..., Path], tmp_path: Path, url: str, grace: float, rule: str = RULE
) -> GatewayProcess:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "rules.yaml").write_text(rule.replace("URL", url))
    config = write_config(
        handlers={"http": {"allow_hosts": ["127.0.0.1"], "timeout": 30}},
        shutdown_grace=grace,
    )
    return GatewayProcess(config).start()


def post_events(gateway: GatewayProcess, server: CountingDownstream) -> None:
    with httpx2.Client(base_url=gateway.url, timeout=10) as http:
        for n in range(EVENTS):
            body, headers = shopify_order(f"sigterm-{n}")
            assert http.post("/hooks/shop", content=body, headers=headers).is_success
    deadline = time.monotonic() + 20
    while sum(server.attempts.values()) < EVENTS:  # every call in flight
        assert time.monotonic() < deadline, "the calls did not start"
        time.sleep(0.02)


def terminate(gateway: GatewayProcess) -> float:
    """SIGTERM; how long the process took to exit."""
    assert gateway.proc is not None
    sent = time.monotonic()
    gateway.proc.terminate()
    gateway.proc.wait(timeout=30)
    return time.monotonic() - sent


def statuses(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return [row[0] for row in db.execute("SELECT status FROM runs ORDER BY id")]


def restart_until_settled(gateway: GatewayProcess, tmp_path: Path) -> None:
    """Start the gateway again and let it finish every run."""
    restarted = GatewayProcess(gateway.config).start()
    try:
        deadline = time.monotonic() + 30
        while statuses(tmp_path) != ["succeeded"] * EVENTS:
            assert time.monotonic() < deadline, restarted.output()
            time.sleep(0.1)
        time.sleep(0.5)  # and then nothing more happens
    finally:
        restarted.stop()


def test_sigterm_lets_calls_in_flight_finish_and_repeats_none(
    write_config: Callable[..., Path],
    tmp_path: Path,
    downstream: tuple[CountingDownstream, str],
) -> None:
    server, url = downstream
    server.delay = 1.5
    gateway = start(write_config, tmp_path, url, grace=15)
    post_events(gateway, server)

    took = terminate(gateway)

    assert took >= 1.0, "the gateway did not wait for its calls"
    assert statuses(tmp_path) == ["succeeded"] * EVENTS  # journaled before exit
    restart_until_settled(gateway, tmp_path)
    assert len(server.effects) == EVENTS
    assert set(server.attempts.values()) == {1}


def test_calls_longer_than_the_grace_period_resume_once_with_the_same_key(
    write_config: Callable[..., Path],
    tmp_path: Path,
    downstream: tuple[CountingDownstream, str],
) -> None:
    server, url = downstream
    server.delay = 3.0
    gateway = start(write_config, tmp_path, url, grace=0.3)
    post_events(gateway, server)

    took = terminate(gateway)
    assert took < 3.0, "the gateway waited past its grace period"
    assert set(statuses(tmp_path)) == {"running"}  # cut off: left to resume

    restart_until_settled(gateway, tmp_path)
    assert len(server.attempts) == EVENTS  # no new key: every repeat carried the first one
    assert set(server.attempts.values()) == {2}


def test_draining_fails_readiness_and_refuses_webhooks(tmp_path: Path) -> None:
    with live_gateway(tmp_path, RULE.replace("URL", "http://127.0.0.1:9")) as gw:
        assert gw.client.get("/readyz").status_code == 200
        gw.app.state.gateway.shutdown.begin()
        ready = gw.client.get("/readyz")
        body, headers = shopify_order("late")
        late = gw.client.post("/hooks/shop", content=body, headers=headers)
    assert (ready.status_code, ready.json()) == (503, {"status": "shutting down"})
    assert (late.status_code, late.headers["retry-after"]) == (503, "1")


def test_a_draining_worker_finishes_the_call_in_flight_and_hands_over_the_next_step(
    write_config: Callable[..., Path],
    tmp_path: Path,
    downstream: tuple[CountingDownstream, str],
) -> None:
    server, url = downstream
    server.delay = 1.5
    two_steps = RULE + '    - http.request: {method: POST, url: "URL/effect", json: {step: 2}}\n'
    gateway = start(write_config, tmp_path, url, grace=15, rule=two_steps)
    post_events(gateway, server)

    terminate(gateway)
    assert statuses(tmp_path) == ["waiting"] * EVENTS  # handed over, no attempt spent
    assert sum(server.attempts.values()) == EVENTS  # no second step was begun

    server.delay = 0.0
    restart_until_settled(gateway, tmp_path)
    assert len(server.effects) == 2 * EVENTS
    assert set(server.attempts.values()) == {1}
