"""/metrics after a known sequence of requests says exactly what happened."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.tools import PermanentToolError
from tests.fixtures import load, requires_fixtures
from tests.live import live_gateway
from tests.recording import FAILURES

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]

RULE = """
- name: orders
  on: {source: shop, event: orders/create}
  actions:
    - test.record: {label: "{{ payload.name }}"}
"""


def sample(metrics: str, name: str) -> float:
    """The value of one sample line (`name{labels}`), 0 if absent."""
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_requests_rejections_runs_steps_and_queues_are_counted(tmp_path: Path) -> None:
    FAILURES["#2"] = [PermanentToolError("refused")]
    with live_gateway(tmp_path, RULE) as gw:
        gw.post_order("a", name="#1")
        gw.post_order("b", name="#2")
        gw.post_order("a", name="#1")  # a redelivery
        order = load("shopify", "orders_create")
        gw.client.post("/hooks/shop", content=order.body + b" ", headers=order.headers)
        gw.finished_runs(2)
        text = gw.client.get("/metrics").text

    assert sample(text, 'gateway_webhook_requests_total{source="shop",status="202"}') == 2
    assert sample(text, 'gateway_webhook_requests_total{source="shop",status="200"}') == 1
    assert sample(text, 'gateway_webhook_requests_total{source="shop",status="401"}') == 1
    assert sample(text, 'gateway_webhook_duplicates_total{source="shop"}') == 1
    assert (
        sample(text, 'gateway_webhook_rejections_total{reason="signature_mismatch",source="shop"}')
        == 1
    )
    assert sample(text, 'gateway_runs_total{rule="orders",status="succeeded"}') == 1
    assert sample(text, 'gateway_runs_total{rule="orders",status="failed"}') == 1
    assert sample(text, 'gateway_step_seconds_count{outcome="succeeded",tool="test.record"}') == 1
    assert sample(text, 'gateway_step_seconds_count{outcome="failed",tool="test.record"}') == 1
    assert sample(text, 'gateway_queue_depth{queue="events"}') == 0
    assert sample(text, 'gateway_queue_depth{queue="runs"}') == 0
    # SQLite's write lock: each commit of the event writer and of the journal, wait and hold.
    for writer in ("events", "journal"):
        for phase in ("wait", "hold"):
            labels = f'{{phase="{phase}",writer="{writer}"}}'
            assert sample(text, f"gateway_store_write_seconds_count{labels}") >= 1
        held = f'gateway_store_write_seconds_sum{{phase="hold",writer="{writer}"}}'
        assert sample(text, held) > 0
