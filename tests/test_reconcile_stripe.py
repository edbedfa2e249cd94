"""Stripe reconciliation against a loopback Stripe speaking `GET /v1/events`, driven by the
real `stripe` library: every event is stored under its id and acted on once, a later real
delivery is a duplicate, a rate limit is waited out, a crash mid-run resumes cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.reconcile import stripe as stripe_reconciler
from gateway.testing.downstream import counting_downstream
from gateway.testing.fake_stripe import FakeStripe
from gateway.testing.server import serve_in_thread
from tests.live import live_gateway
from tests.reconciling import (
    HANDLERS,
    RULES,
    STRIPE_KEY,
    STRIPE_SECRET,
    Waits,
    run_once,
    stored_events,
    write_config,
)


@pytest.fixture
def fake() -> Iterator[tuple[FakeStripe, str]]:
    server = FakeStripe(STRIPE_SECRET, STRIPE_KEY)
    with serve_in_thread(server.app) as url:
        yield server, url


def source(api: str | None, **reconcile: Any) -> dict[str, Any]:
    stripe: dict[str, Any] = {"provider": "stripe", "secrets": [STRIPE_SECRET], "tolerance": 0}
    if api is not None:
        stripe["reconcile"] = {"every": "10m", "api_key": STRIPE_KEY, "api_base": api,
                               **reconcile}  # fmt: skip
    return {"pay": stripe}


def invoice(n: int) -> dict[str, Any]:
    return {"id": f"in_{n:04d}", "object": "invoice", "amount_paid": 1000 + n}


def test_events_stripe_could_not_deliver_while_the_gateway_was_down_are_acted_on_once(
    tmp_path: Path, fake: tuple[FakeStripe, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stripe_api, api = fake
    monkeypatch.setattr(stripe_reconciler, "PAGE_SIZE", 2)  # five events: three pages
    with counting_downstream() as (effects, url):
        rules = RULES.replace("URL", url)
        with live_gateway(tmp_path, rules, handlers=HANDLERS, sources=source(None)) as gw:
            stripe_api.target = gw.url + "/hooks/pay"
            delivered = [stripe_api.emit("invoice.paid", invoice(n)) for n in range(2)]
            gw.finished_runs(2)
        missed = [stripe_api.emit("invoice.paid", invoice(n)) for n in range(2, 5)]
        assert [stripe_api.delivered[e["id"]] for e in delivered + missed] == [True] * 2 + [
            False
        ] * 3
        stripe_api.fail_next(429, {"Retry-After": "1"})
        with live_gateway(tmp_path, rules, handlers=HANDLERS, sources=source(api)) as gw:
            stripe_api.target = gw.url + "/hooks/pay"
            records = gw.wait_for(lambda: [r for r in gw.query(lambda s: s.reconciliations.recent())
                                           if r.status != "running"])  # fmt: skip
            runs = gw.finished_runs(5)
            # Stripe's own retry arrives after reconciliation stored the event: a duplicate.
            assert stripe_api.deliver(missed[0])
            events = gw.query(lambda s: s.events.find(source="pay"))
    assert records[0].status == "succeeded", records[0].error
    assert (records[0].found, records[0].missing, records[0].stored) == (5, 3, 3)
    assert [r.status for r in runs] == ["succeeded"] * 5
    assert {event: len(keys) for event, keys in effects.keys_by_event.items()} == {
        f"in_{n:04d}": 1 for n in range(5)
    }
    assert sorted((e.delivery_id, e.received_via) for e in events) == [
        (e["id"], "webhook") for e in delivered
    ] + [(e["id"], "reconcile") for e in missed]
    pages = [r.get("starting_after") for r in stripe_api.requests if r.get("limit") == "2"]
    assert pages == [None, None, "evt_loop00004", "evt_loop00002"]  # the first after the 429


def test_the_next_run_asks_for_events_created_after_the_last_seen(
    tmp_path: Path, fake: tuple[FakeStripe, str]
) -> None:
    stripe_api, api = fake
    config = write_config(tmp_path, source(api, failed_only=True, overlap=0))
    first_event = stripe_api.emit("invoice.paid", invoice(1))
    first = run_once(config, "pay")
    stripe_api.emit("invoice.paid", invoice(2))
    second = run_once(config, "pay")
    assert first is not None and second is not None
    assert (first.stored, second.found, second.stored) == (1, 1, 1)
    assert stripe_api.requests[-1]["created[gt]"] == str(first_event["created"])
    assert stripe_api.requests[-1]["delivery_success"] == "false"


def test_a_rate_limit_is_waited_out_as_stripe_asks(
    tmp_path: Path, fake: tuple[FakeStripe, str]
) -> None:
    stripe_api, api = fake
    config = write_config(tmp_path, source(api))
    stripe_api.emit("invoice.paid", invoice(1))
    stripe_api.fail_next(429, {"Retry-After": "4"})
    waits = Waits()
    record = run_once(config, "pay", sleep=waits)
    assert record is not None and record.status == "succeeded", record
    assert waits.asked == [4.0]
    assert record.stored == 1


def test_a_refused_api_key_fails_the_run_with_its_error_recorded(
    tmp_path: Path, fake: tuple[FakeStripe, str]
) -> None:
    _, api = fake
    sources = source(api)
    sources["pay"]["reconcile"]["api_key"] = "sk_test_wrong"
    record = run_once(write_config(tmp_path, sources), "pay")
    assert record is not None and record.status == "failed"
    assert "Invalid API Key" in (record.error or "")


def test_a_crash_in_the_middle_of_a_run_resumes_without_duplicates(
    tmp_path: Path, fake: tuple[FakeStripe, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stripe_api, api = fake
    config = write_config(tmp_path, source(api))
    emitted = [stripe_api.emit("invoice.paid", invoice(n)) for n in range(5)]
    original = stripe_reconciler.StripeReconciler.keep
    kept = []

    async def crash_after_two(self: Any, *args: Any) -> bool:
        if len(kept) == 2:
            raise RuntimeError("killed mid-run")
        kept.append(args)
        return await original(self, *args)

    monkeypatch.setattr(stripe_reconciler.StripeReconciler, "keep", crash_after_two)
    crashed = run_once(config, "pay")
    assert crashed is not None and crashed.status == "failed" and crashed.stored == 2
    monkeypatch.setattr(stripe_reconciler.StripeReconciler, "keep", original)
    resumed = run_once(config, "pay")
    assert resumed is not None and resumed.status == "succeeded"
    assert (resumed.found, resumed.missing, resumed.stored) == (5, 3, 3)
    ids = [e.delivery_id for e in stored_events(config, "pay")]
    assert sorted(ids) == sorted(e["id"] for e in emitted)


def test_backfill_runs_once_from_the_command_line_and_prints_what_it_found(
    tmp_path: Path, fake: tuple[FakeStripe, str]
) -> None:
    stripe_api, api = fake
    write_config(tmp_path, source(api))
    for n in range(3):
        stripe_api.emit("invoice.paid", invoice(n))
    command = [sys.executable, "-m", "gateway.cli", "backfill", "pay", "--since",
               "2025-11-29T00:00Z", "--config", str(tmp_path / "gateway.yaml")]  # fmt: skip
    done = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert (record["status"], record["found"], record["stored"]) == ("succeeded", 3, 3)
    assert stripe_api.requests[-1]["created[gt]"] == "1764374400"  # --since, as Stripe counts
    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "succeeded: 3 found, 0 missing, 0 stored" in again.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "reconciliations", "--json", "--config",
         str(tmp_path / "gateway.yaml")], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [(r["source"], r["stored"], r["status"]) for r in runs] == [
        ("pay", 0, "succeeded"), ("pay", 3, "succeeded"),
    ]  # fmt: skip


def test_a_reconciliation_is_shown_in_the_admin_api_the_dashboard_and_the_metrics(
    tmp_path: Path, fake: tuple[FakeStripe, str]
) -> None:
    import httpx2
    from prometheus_client import generate_latest

    stripe_api, api = fake
    token = "reconcile-admin-token"
    for n in range(2):
        stripe_api.emit("invoice.paid", invoice(n))  # no gateway yet: both missed
    with live_gateway(tmp_path, "[]", admin_token=token, sources=source(api)) as gw:
        gw.wait_for(lambda: gw.query(lambda s: s.reconciliations.last_success("pay")))
        auth = {"authorization": f"Bearer {token}"}
        listed = gw.client.get("/api/reconciliations", params={"source": "pay"}, headers=auth)
        events = gw.client.get("/api/events", headers=auth)
        login = gw.client.post("/ui/login", data={"token": token, "next": "/ui/schedules"})
        name, _, value = login.headers["set-cookie"].split(";")[0].partition("=")
        with httpx2.Client(base_url=gw.url, cookies={name: value}) as client:
            page = client.get("/ui/schedules").text
        metrics = generate_latest(gw.app.state.gateway.metrics.registry).decode()
    assert listed.status_code == 200, listed.text
    (run,) = listed.json()["items"]
    assert (run["source"], run["status"], run["found"], run["missing"], run["stored"]) == (
        "pay", "succeeded", 2, 2, 2,
    )  # fmt: skip
    assert {e["received_via"] for e in events.json()["items"]} == {"reconcile"}
    assert 'id="reconciliations"' in page and "<td>pay <span" in page
    assert 'gateway_reconciled_events_total{source="pay"} 2.0' in metrics


def test_a_real_delivery_racing_a_reconciliation_is_stored_once(
    tmp_path: Path, fake: tuple[FakeStripe, str]
) -> None:
    from gateway.app import create_app

    stripe_api, api = fake
    config = write_config(tmp_path, source(api))
    missed = [stripe_api.emit("invoice.paid", invoice(n)) for n in range(3)]
    with serve_in_thread(create_app(config, roles=frozenset({"ingest"}))) as url:
        stripe_api.target = url + "/hooks/pay"
        # Stripe's retry of the first lands while the run is listing the events.
        stripe_api.during_list = lambda: stripe_api.deliver(missed[0])
        record = run_once(config, "pay")
        assert stripe_api.deliver(missed[1])  # and one after it: answered, a duplicate
    assert record is not None and record.status == "succeeded", record
    assert (record.found, record.missing, record.stored) == (3, 2, 2)
    events = {e.delivery_id: e.received_via for e in stored_events(config, "pay")}
    assert events == {missed[0]["id"]: "webhook", missed[1]["id"]: "reconcile",
                      missed[2]["id"]: "reconcile"}  # fmt: skip
