"""With tracing on, every run is a span tree: event → run → model call → tool call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import tracing
from gateway.testing.fake_llm import ScriptedModel, answer, call
from tests.fixtures import requires_fixtures
from tests.live import live_gateway

pytest.importorskip("opentelemetry.sdk", reason="the tracing extra is not installed")
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]

RULE = """
- name: traced
  on: {source: shop, event: orders/create}
  assistant:
    prompt: "Order {{ payload.name }}"
    tools: [test.record]
"""


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(None, exporter=exporter)
    yield exporter
    tracing.configure(None)


def test_a_run_is_traced_from_event_to_model_and_tool_calls(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    with (
        ScriptedModel(
            call("test__record", {"label": "vip", "delay_ms": 0, "order": None}),
            answer("ok"),
        ) as model,
        live_gateway(
            tmp_path,
            RULE,
            models={"default": {"api": "responses", "base_url": model.url, "model": "m"}},
        ) as gw,
    ):
        gw.post_order("e1", name="#1")
        [run] = gw.finished_runs(1)

    finished = {s.name: s for s in spans.get_finished_spans()}
    assert set(finished) >= {"event", "run", "model", "tool"}
    event, traced_run = finished["event"], finished["run"]
    assert traced_run.parent is not None and traced_run.parent.span_id == event.context.span_id
    for child in ("model", "tool"):
        assert finished[child].parent is not None
        assert finished[child].parent.span_id == traced_run.context.span_id
    assert traced_run.attributes is not None and traced_run.attributes["gateway.run_id"] == run.id
    assert finished["tool"].attributes is not None
    assert finished["tool"].attributes["gateway.tool"] == "test.record"
