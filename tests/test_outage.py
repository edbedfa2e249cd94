"""A downstream outage under load, scaled down 20 times (60 s → 3 s; the retry cap and the
circuit's waits likewise): every acknowledged event's side effect happens once after recovery,
runs wait behind the open circuit meanwhile, and none is dead."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import generate_latest

from gateway.testing.downstream import CountingDownstream
from tests.live import live_gateway

OUTAGE_SECONDS = 3.0
EVENTS = 60

RULE = """
- name: notify
  on: {source: shop, event: orders/create}
  actions:
    - http.request: {method: POST, url: "URL/effect", json: {order: "{{ payload.name }}"}}
"""

SCALED = {
    # 10 min cap and 30 s circuit waits, scaled down; the horizon stays long.
    "retry": {
        "horizon": "1h",
        "circuit": {"failures": 5, "open_for": 0.25, "open_max": 0.5},
    },
    "worker": {"backoff_base": 0.05, "backoff_max": 0.5},
}


def test_a_downstream_outage_under_load_loses_and_repeats_nothing(
    tmp_path: Path, downstream: tuple[CountingDownstream, str]
) -> None:
    server, url = downstream
    rules = RULE.replace("URL", url)
    handlers = {"http": {"allow_hosts": ["127.0.0.1"]}}
    with live_gateway(tmp_path, rules, handlers=handlers, **SCALED) as gw:  # type: ignore[arg-type]
        server.outage(OUTAGE_SECONDS)
        saw_waiting = False
        started = time.monotonic()
        for n in range(EVENTS):
            gw.post_order(f"e{n}", name=f"#{n}")
            time.sleep((OUTAGE_SECONDS + 1) / EVENTS)
            if not saw_waiting and server.down:
                saw_waiting = any(
                    r.error == "circuit open: http 127.0.0.1" for r in gw.runs(status="waiting")
                )
        assert time.monotonic() - started > OUTAGE_SECONDS  # events arrived across the outage
        runs = gw.finished_runs(EVENTS, timeout=60)
        metrics = generate_latest(gw.app.state.gateway.metrics.registry).decode()

    assert server.refused > 0
    assert saw_waiting, "no run waited behind the open circuit"
    assert [r.status for r in runs] == ["succeeded"] * EVENTS
    assert len(server.effects) == EVENTS  # one key per event
    assert set(server.effects.values()) == {1}  # each side effect once
    assert 'gateway_circuit_open{downstream="http 127.0.0.1"} 0.0' in metrics


def test_waiting_runs_and_open_circuits_are_shown_in_the_cli_api_and_dashboard(
    tmp_path: Path, downstream: tuple[CountingDownstream, str]
) -> None:
    from typer.testing import CliRunner

    from gateway import cli
    from gateway.api.auth import SESSION_COOKIE, Sessions

    server, url = downstream
    token = "a-long-enough-admin-token-for-tests-0123456789"
    handlers = {"http": {"allow_hosts": ["127.0.0.1"]}}
    server.outage(600)
    with live_gateway(
        tmp_path, RULE.replace("URL", url), handlers=handlers, admin_token=token, **SCALED
    ) as gw:  # type: ignore[arg-type]
        for n in range(8):
            gw.post_order(f"e{n}", name=f"#{n}")
        gw.wait_for(lambda: len(gw.runs(status="waiting")) >= 3)

        shown = CliRunner().invoke(
            cli.app, ["runs", "-c", str(tmp_path / "gateway.yaml")], env={"COLUMNS": "200"}
        )
        listed = gw.client.get(
            "/api/runs", params={"status": "waiting"}, headers={"Authorization": f"Bearer {token}"}
        ).json()["items"]
        gw.client.cookies.set(SESSION_COOKIE, Sessions(token).issue(), path="/ui")
        page = gw.client.get("/ui/dead").text

        server.outage(0)  # the downstream is back: a probe gets through, the rest are woken
        runs = gw.finished_runs(8, timeout=30)

    assert shown.exit_code == 0, shown.output
    assert "waiting until" in shown.output
    assert "circuit open: http 127.0.0.1: " in shown.output
    assert all(r["error"] == "circuit open: http 127.0.0.1" for r in listed)
    assert all(r["next_attempt_at"] for r in listed)
    assert "Waiting for a downstream" in page and "http 127.0.0.1" in page
    assert [r.status for r in runs] == ["succeeded"] * 8
    assert set(server.effects.values()) == {1}


def test_an_assistant_run_waits_behind_an_open_circuit_and_resumes_without_a_new_turn(
    tmp_path: Path, downstream: tuple[CountingDownstream, str]
) -> None:
    from gateway.testing.fake_llm import ScriptedModel, answer, call

    server, url = downstream
    server.outage(600)
    notify = {"method": "POST", "url": f"{url}/effect", "headers": None, "body": None}
    rule = """
- name: tell
  on: {source: shop, event: orders/create}
  assistant:
    prompt: "Order {{ payload.name }}"
    tools: [http.request]
"""
    with ScriptedModel(
        call("http__request", {**notify, "json": {"order": "#1"}}), answer("Told.")
    ) as model:
        models = {"default": {"api": "responses", "base_url": model.url, "model": "m"}}
        handlers = {"http": {"allow_hosts": ["127.0.0.1"]}}
        with live_gateway(tmp_path, rule, handlers=handlers, models=models, **SCALED) as gw:  # type: ignore[arg-type]
            gw.post_order("e1", name="#1")
            [waiting] = gw.wait_for(lambda: gw.runs(status="waiting"))
            server.outage(0)
            [run] = gw.finished_runs(1)

    assert waiting.error == "circuit open: http 127.0.0.1"
    assert run.status == "succeeded"
    assert list(server.effects.values()) == [1]
    assert len(model.requests) == 2  # the call was resumed from the journal, not asked again
