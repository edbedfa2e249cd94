"""Thin events: a Stripe source with `fetch: thin` has the worker fetch each thin event's object
through the real `stripe` library (from a loopback server speaking the parts of Stripe's API it
uses) before routing, keeps it beside the raw body, and rules see it at `payload.object`."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from gateway import config as config_module
from gateway.cli import app
from gateway.config import Config, SourceConfig
from gateway.errors import ConfigError
from gateway.ingest.provider import PROVIDERS
from gateway.ingest.providers.stripe import StripeSettings
from gateway.metrics import Metrics
from gateway.rules.loader import load as load_rules
from gateway.rules.scope import scope_for
from gateway.store import Event, NewEvent, Store
from gateway.testing.server import serve_in_thread
from gateway.thin.fetcher import MAX_FETCHED_BYTES, bounded
from gateway.thin.fetching import Fetching
from gateway.thin.stripe import StripeFetcher
from gateway.worker import Worker
from tests.live import LiveGateway, live_gateway
from tests.postgres import fresh_database

# Every rule here records its calls with the test tool.
pytestmark = pytest.mark.usefixtures("recording")

SECRET = "whsec_test_thin_events"
API_KEY = "sk_test_thin_events_key"
TOKEN = "thin-admin-token"
METER = {
    "id": "mtr_123",
    "object": "billing.meter",
    "status": "active",
    "display_name": "API calls",
    "event_name": "api_call",
}
RULES = """
- name: meter-errors
  on: {source: pay, event: v1.billing.meter.error_report_triggered}
  when: "{{ payload.object.status == 'active' }}"
  actions:
    - test.record: {label: "meter {{ payload.object.id }}: {{ payload.object.display_name }}"}
"""


def thin_event(event_id: str, meter_id: str = "mtr_123") -> bytes:
    """A thin event as a Stripe event destination posts it: ids and a link, no object."""
    return orjson.dumps(
        {
            "id": event_id,
            "object": "v2.core.event",
            "type": "v1.billing.meter.error_report_triggered",
            "livemode": False,
            "created": "2026-11-30T10:00:00.000Z",
            "related_object": {
                "id": meter_id,
                "type": "billing.meter",
                "url": f"/v1/billing/meters/{meter_id}",
            },
        }
    )


def signed(body: bytes) -> dict[str, str]:
    """Headers as Stripe sends them, signed by Stripe's own library."""
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), SECRET)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


class StripeAPI:
    """The parts of Stripe's API thin events use: an event (v2) and a related object (v1),
    each path answered from its planned failures first, then from `objects`."""

    def __init__(self) -> None:
        # Seconds each answer waits before it is sent (a slow API).
        self.delay = 0.0
        self.objects: dict[str, dict[str, Any]] = {"/v1/billing/meters/mtr_123": METER}
        self.failures: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
        self.requests: list[tuple[str, str, float]] = []

    def app(self) -> Starlette:
        async def answer(request: Request) -> JSONResponse:
            path = request.url.path
            self.requests.append((path, request.headers["authorization"], time.monotonic()))
            await asyncio.sleep(self.delay)
            if self.failures[path]:
                status, headers = self.failures[path].pop(0)
                error = {"type": "api_error", "message": f"planned {status}"}
                return JSONResponse({"error": error}, status, headers=headers)
            if path not in self.objects:
                error = {"type": "invalid_request_error", "message": "No such object"}
                return JSONResponse({"error": error}, 404)
            return JSONResponse(self.objects[path])

        return Starlette(routes=[Route("/{path:path}", answer)])

    def asked(self, path: str) -> list[float]:
        return [at for asked, _, at in self.requests if asked == path]


@contextmanager
def stripe_api() -> Iterator[tuple[StripeAPI, str]]:
    api = StripeAPI()
    with serve_in_thread(api.app()) as url:
        yield api, url


def pay_source(api_base: str) -> dict[str, Any]:
    return {
        "provider": "stripe",
        "secrets": [SECRET],
        "fetch": "thin",
        "api_key": API_KEY,
        "api_base": api_base,
    }


@contextmanager
def gateway(tmp_path: Path, api_base: str, **overrides: Any) -> Iterator[LiveGateway]:
    retry = {"backoff_base": 0.01, "backoff_max": 0.05, **overrides.pop("retry", {})}
    with live_gateway(
        tmp_path,
        RULES,
        sources={"pay": pay_source(api_base)},
        retry=retry,
        admin_token=TOKEN,
        **overrides,
    ) as gw:
        yield gw


def deliver(gw: LiveGateway, body: bytes) -> int:
    response = gw.client.post("/hooks/pay", content=body, headers=signed(body))
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def event_status(gw: LiveGateway, event_id: int, status: str) -> Event | None:
    event = gw.event(event_id)
    return event if event.status == status else None


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    from tests.postgres import fresh_database_sync

    with fresh_database_sync() as url:
        yield url


def test_a_thin_stripe_event_is_fetched_and_routed_on_its_full_object(
    tmp_path: Path, store_url: str
) -> None:
    body = thin_event("evt_thin_1")
    with stripe_api() as (api, url), gateway(tmp_path, url, store=store_url) as gw:
        event_id = deliver(gw, body)
        (run,) = gw.finished_runs(1)
        (step,) = gw.steps(run.id)
        event = gw.event(event_id)

    assert (run.rule, run.status) == ("meter-errors", "succeeded")
    assert step.arguments["label"] == "meter mtr_123: API calls"
    # Fetched once, with the source's key, through the related object's link.
    assert [(path, auth) for path, auth, _ in api.requests] == [
        ("/v1/billing/meters/mtr_123", f"Bearer {API_KEY}")
    ]
    assert event.fetched == METER
    assert event.body == body  # the raw delivery is kept as it came
    assert event.status == "routed"


def test_a_rule_sees_the_fetched_object_not_the_delivered_one(tmp_path: Path) -> None:
    with stripe_api() as (api, url), gateway(tmp_path, url) as gw:
        api.objects["/v1/billing/meters/mtr_off"] = METER | {"id": "mtr_off", "status": "inactive"}
        event_id = deliver(gw, thin_event("evt_inactive", "mtr_off"))
        event = gw.wait_for(lambda: event_status(gw, event_id, "unmatched"))

    assert event.fetched["status"] == "inactive"  # the `when:` read the fetched status
    assert gw.runs() == []


def test_a_snapshot_event_on_a_fetching_source_routes_as_sent(tmp_path: Path) -> None:
    rules = """
- name: invoices
  on: {source: pay, event: invoice.payment_failed}
  actions:
    - test.record: {label: "invoice {{ payload.data.object.id }}"}
"""
    body = orjson.dumps(
        {
            "id": "evt_snapshot",
            "object": "event",
            "type": "invoice.payment_failed",
            "data": {"object": {"id": "in_1", "object": "invoice"}},
        }
    )
    with (
        stripe_api() as (api, url),
        live_gateway(tmp_path, rules, sources={"pay": pay_source(url)}) as gw,
    ):
        deliver(gw, body)
        (run,) = gw.finished_runs(1)

    assert run.status == "succeeded"
    assert api.requests == []


def test_a_failing_fetch_is_retried_honouring_retry_after_and_the_event_routed_once(
    tmp_path: Path,
) -> None:
    path = "/v1/billing/meters/mtr_123"
    with stripe_api() as (api, url), gateway(tmp_path, url) as gw:
        api.failures[path] += [(500, {}), (429, {"Retry-After": "1"})]
        event_id = deliver(gw, thin_event("evt_flaky"))
        (run,) = gw.finished_runs(1)
        metrics = gw.client.get("/metrics").text
        detail = gw.client.get(
            f"/api/events/{event_id}", headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()

    asked = api.asked(path)
    assert len(asked) == 3  # 500, 429, then the object
    assert asked[2] - asked[1] >= 0.9  # the 429's Retry-After outweighs the 10 ms backoff
    assert run.status == "succeeded"
    assert 'gateway_thin_fetches_total{outcome="retry",source="pay"} 2.0' in metrics
    assert 'gateway_thin_fetches_total{outcome="fetched",source="pay"} 1.0' in metrics
    assert detail["fetch"]["attempts"] == 3
    assert detail["fetch"]["error"] is None
    assert detail["fetched"] == METER


def test_ingest_stores_a_thin_event_while_the_stripe_api_is_down(tmp_path: Path) -> None:
    with stripe_api() as (_api, url):
        pass  # stopped: nothing answers at `url` any more
    body = thin_event("evt_while_down")
    with gateway(tmp_path, url) as gw:
        event_id = deliver(gw, body)
        event = gw.wait_for(lambda: event_status(gw, event_id, "fetching"))
        fetch = gw.wait_for(lambda: gw.query(lambda s: _retried(s, event_id)))
        metrics = gw.client.get("/metrics").text
        auth = {"Authorization": f"Bearer {TOKEN}"}
        replay = gw.client.post(f"/api/events/{event_id}/replay", headers=auth)

    assert event.body == body
    assert event.fetched is None
    assert "Stripe could not be reached" in (fetch.error or "")
    assert 'gateway_queue_depth{queue="fetches"} 1.0' in metrics
    # Its rules have not run yet: a replay would run them on the thin body.
    assert replay.status_code == 409
    assert "still fetching its object" in replay.text


async def _retried(store: Store, event_id: int) -> Any:
    fetch = await store.fetches.get(event_id)
    return fetch if fetch is not None and fetch.attempts >= 1 else None


def test_after_the_retry_horizon_the_event_fails_to_fetch_until_replayed(tmp_path: Path) -> None:
    path = "/v1/billing/meters/mtr_123"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with stripe_api() as (api, url), gateway(tmp_path, url, retry={"horizon": "300ms"}) as gw:
        api.failures[path] += [(503, {})] * 1000
        event_id = deliver(gw, thin_event("evt_gone"))
        gw.wait_for(lambda: event_status(gw, event_id, "fetch_failed"))
        listed = gw.client.get("/api/events?status=fetch_failed", headers=auth).json()
        detail = gw.client.get(f"/api/events/{event_id}", headers=auth).json()
        page = dashboard(gw, f"/ui/events/{event_id}")
        api.failures[path].clear()
        replayed = gw.client.post(f"/api/events/{event_id}/replay", headers=auth).json()
        (run,) = gw.finished_runs(1)

    assert [item["id"] for item in listed["items"]] == [event_id]
    assert "retry horizon" in detail["fetch"]["error"]
    assert "Stripe answered 503" in detail["fetch"]["error"]
    assert "Failed to fetch" in page and "Stripe answered 503" in page
    assert replayed == {"event_id": event_id, "runs": [], "fetching": True}
    assert run.status == "succeeded"


def dashboard(gw: LiveGateway, path: str) -> str:
    """A dashboard page's HTML, logged in with the admin token."""
    login = gw.client.post("/ui/login", data={"token": TOKEN, "next": path})
    assert login.status_code in (200, 303), login.text
    cookies = dict(login.cookies.items())
    with httpx2.Client(base_url=gw.url, cookies=cookies) as client:
        return client.get(path).text


def test_an_object_stripe_does_not_have_fails_at_once(tmp_path: Path) -> None:
    with stripe_api() as (api, url), gateway(tmp_path, url) as gw:
        event_id = deliver(gw, thin_event("evt_missing", "mtr_nowhere"))
        gw.wait_for(lambda: event_status(gw, event_id, "fetch_failed"))
        fetch = gw.query(lambda s: s.fetches.get(event_id))
        config = str(tmp_path / "gateway.yaml")
        listed = CliRunner().invoke(
            app, ["events", "--config", config, "--status", "fetch_failed", "--json"]
        )

    assert len(api.asked("/v1/billing/meters/mtr_nowhere")) == 1  # a 404 is not retried
    assert "Stripe answered 404" in fetch.error
    assert listed.exit_code == 0, listed.output
    assert [row["id"] for row in orjson.loads(listed.output)] == [event_id]


def test_a_thin_event_without_a_related_object_routes_on_the_full_event(tmp_path: Path) -> None:
    rules = """
- name: anything
  on: {source: pay, event: v2.acme.widget.turned}
  when: "{{ payload.object.data.turns == 3 }}"
  actions:
    - test.record: {label: "turned"}
"""
    body = orjson.dumps(
        {
            "id": "evt_widget",
            "object": "v2.core.event",
            "type": "v2.acme.widget.turned",
            "created": "2026-11-30T10:00:00.000Z",
        }
    )
    full = orjson.loads(body) | {"data": {"turns": 3}, "livemode": False}
    with (
        stripe_api() as (api, url),
        live_gateway(tmp_path, rules, sources={"pay": pay_source(url)}) as gw,
    ):
        api.objects["/v2/core/events/evt_widget"] = full
        deliver(gw, body)
        (run,) = gw.finished_runs(1)

    assert run.status == "succeeded"
    assert [path for path, _, _ in api.requests] == ["/v2/core/events/evt_widget"]


def test_an_eval_replays_a_thin_event_on_the_object_fetched_live(tmp_path: Path) -> None:
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    (candidate / "rules.yaml").write_text(RULES.replace("meter {{", "candidate {{"))
    config, report = str(tmp_path / "gateway.yaml"), str(tmp_path / "report.json")
    with stripe_api() as (api, url):
        with gateway(tmp_path, url) as gw:
            deliver(gw, thin_event("evt_eval"))
            gw.finished_runs(1)
        asked = len(api.requests)
        result = CliRunner().invoke(
            app,
            ["eval", "--config", config, "--rules", str(candidate), "--last", "1", "--out", report],
        )
        assert len(api.requests) == asked == 1  # the eval fetched nothing

    assert result.exit_code == 0, result.output
    (event,) = orjson.loads((tmp_path / "report.json").read_bytes())["events"]
    (call,) = event["candidate"]["calls"]
    assert call["arguments"]["label"] == "candidate mtr_123: API calls"


def test_the_fetched_object_takes_the_place_of_the_delivered_object_key() -> None:
    body = thin_event("evt_scope")
    event = Event(1, "pay", "stripe", "v1.billing.meter.error_report_triggered", "evt_scope",
                  _now(), {}, body, "pending", fetched=METER)  # fmt: skip
    payload = scope_for(event)["payload"]

    assert payload["object"] == METER
    assert payload["related_object"]["id"] == "mtr_123"
    assert orjson.loads(body)["object"] == "v2.core.event"  # the body itself is untouched


def test_a_fetched_object_up_to_the_limit_is_kept_and_one_byte_more_is_refused() -> None:
    padding = MAX_FETCHED_BYTES - len(orjson.dumps({"x": ""}))
    assert bounded(1, {"x": "a" * padding}) == {"x": "a" * padding}
    with pytest.raises(Exception, match="at most 1048576 are kept") as refused:
        bounded(1, {"x": "a" * (padding + 1)})
    assert refused.value.retryable is False  # type: ignore[attr-defined]


def test_an_api_base_must_be_an_http_url(tmp_path: Path) -> None:
    source = pay_source("ftp://127.0.0.1/")
    (tmp_path / "gateway.yaml").write_text(orjson.dumps({"sources": {"pay": source}}).decode())
    with pytest.raises(ConfigError, match=r"api_base: .*'ftp://127\.0\.0\.1/' is not an http"):
        config_module.load(tmp_path / "gateway.yaml", environ={})


def test_fetch_thin_needs_an_api_key(tmp_path: Path) -> None:
    source = {"provider": "stripe", "secrets": [SECRET], "fetch": "thin"}
    (tmp_path / "gateway.yaml").write_text(orjson.dumps({"sources": {"pay": source}}).decode())
    with pytest.raises(ConfigError, match="fetch: thin needs `api_key`"):
        config_module.load(tmp_path / "gateway.yaml", environ={})
    # And the gateway's signature for the source is one Stripe's library accepts.
    provider = PROVIDERS["stripe"](SourceConfig.model_validate(pay_source("http://x")))
    body = thin_event("evt_sig")
    headers = provider.sign(body, {}, time.time())
    client = stripe.StripeClient(API_KEY)
    notification = client.parse_event_notification(body, headers["Stripe-Signature"], SECRET)
    assert notification.id == "evt_sig"


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
        await opened.open()
        yield opened
        await opened.close()
        return
    async with fresh_database() as url:
        opened = Store(url)
        await opened.open()
        yield opened
        await opened.close()


async def test_a_fetch_is_claimed_by_one_claimer_and_kept_once(store: Store) -> None:
    new = NewEvent("pay", "stripe", "t", "evt_1", {}, thin_event("evt_1"), _now())
    stored = await store.events.add(new)
    assert await store.fetches.begin([stored.id]) == [stored.id]
    assert await store.events.pending() == []  # out of routing while it is fetched

    (claimed,) = await store.fetches.claim(10, lease=60)
    assert claimed[0].id == stored.id
    assert await store.fetches.claim(10, lease=60) == []  # leased: nobody else takes it

    assert await store.fetches.fetched(stored.id, METER) is True
    assert await store.fetches.fetched(stored.id, {"other": 1}) is False  # done already
    # A claimer that outlived its lease and failed changes nothing of a fetch done.
    await store.fetches.retry_later(stored.id, _now(), "late failure")
    await store.fetches.fail(stored.id, "late failure")
    done = await store.fetches.get(stored.id)
    assert done is not None and (done.attempts, done.error) == (1, None)
    (pending,) = await store.events.pending()
    assert (pending.id, pending.fetched, pending.body) == (stored.id, METER, new.body)


async def test_two_replicas_claiming_together_never_take_the_same_fetch(store: Store) -> None:
    ids = []
    for number in range(20):
        body = thin_event(f"evt_r{number}")
        new = NewEvent("pay", "stripe", "t", f"evt_r{number}", {}, body, _now())
        ids.append((await store.events.add(new)).id)
    assert await store.fetches.begin(ids) == ids
    other = Store(store.url)
    await other.open()
    try:
        taken = await asyncio.gather(
            *(replica.fetches.claim(4, lease=60) for replica in (store, other) for _ in range(3))
        )
    finally:
        await other.close()
    claimed = [event.id for batch in taken for event, _ in batch]
    assert len(claimed) == len(set(claimed)) > 0
    assert set(claimed) <= set(ids)


async def test_routing_one_thin_event_holds_it_for_its_fetch(store: Store, tmp_path: Path) -> None:
    config = Config.model_validate({"sources": {"pay": pay_source("http://127.0.0.1:9")}})
    stored = await store.events.add(
        NewEvent("pay", "stripe", "t", "evt_5", {}, thin_event("evt_5"), _now())
    )
    event = await store.events.get(stored.id)
    assert event is not None
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text(RULES)
    worker = Worker(store, load_rules(tmp_path / "rules"), config)
    try:
        assert await worker.route(event) == []
    finally:
        await worker.fetching.aclose()
    assert (await store.events.get(stored.id)).status == "fetching"  # type: ignore[union-attr]


async def test_an_event_of_a_fetching_source_is_never_settled_unmatched_at_ingest(
    store: Store, tmp_path: Path
) -> None:
    # Its type may match no rule, but its fetch comes first: it is routed (and fetched) as sent.
    config = Config.model_validate({"sources": {"pay": pay_source("http://127.0.0.1:9")}})
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text(RULES)
    worker = Worker(store, load_rules(tmp_path / "rules"), config)
    try:
        thin = NewEvent("pay", "stripe", "no.rule.fits", "evt_6", {}, thin_event("evt_6"), _now())
        other = replace(thin, source="elsewhere")
        assert not worker.unmatched(thin)
        assert worker.unmatched(other)
    finally:
        await worker.fetching.aclose()


async def test_a_fetch_whose_claimer_died_is_claimed_again_when_its_lease_ends(
    store: Store,
) -> None:
    stored = await store.events.add(
        NewEvent("pay", "stripe", "t", "evt_3", {}, thin_event("evt_3"), _now())
    )
    await store.fetches.begin([stored.id])
    (first,) = await store.fetches.claim(10, lease=0)  # a lease over at once: the claimer died
    (again,) = await store.fetches.claim(10, lease=60)
    assert first[0].id == again[0].id == stored.id


async def test_pruning_a_body_prunes_the_fetched_object_beside_it(store: Store) -> None:
    stored = await store.events.add(
        NewEvent("pay", "stripe", "t", "evt_4", {}, thin_event("evt_4"), _now())
    )
    await store.fetches.begin([stored.id])
    await store.fetches.fetched(stored.id, METER)
    await store.retention.prune_bodies([stored.id])
    pruned = await store.events.get(stored.id)
    assert pruned is not None
    assert (pruned.pruned, pruned.body, pruned.fetched) == (True, b"", None)


async def test_a_failed_fetch_is_restarted_by_an_operator(store: Store) -> None:
    stored = await store.events.add(
        NewEvent("pay", "stripe", "t", "evt_2", {}, thin_event("evt_2"), _now())
    )
    await store.fetches.begin([stored.id])
    await store.fetches.retry_later(stored.id, _now(), "Stripe answered 500")
    await store.fetches.fail(stored.id, "gave up")
    assert (await store.events.get(stored.id)).status == "fetch_failed"  # type: ignore[union-attr]
    assert await store.fetches.claim(10, lease=60) == []

    assert await store.fetches.restart(stored.id) is True
    assert await store.fetches.restart(stored.id) is False  # fetching already
    (claimed,) = await store.fetches.claim(10, lease=60)
    assert (claimed[1].attempts, claimed[1].retry_since, claimed[1].error) == (2, None, "gave up")


@pytest.mark.parametrize(("delay", "fetched"), [(0.1, True), (0.5, False)])
async def test_a_fetch_must_be_answered_within_its_timeout(
    tmp_path: Path, delay: float, fetched: bool
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
    await store.open()
    with stripe_api() as (api, url):
        api.delay = delay
        settings = StripeSettings(fetch="thin", api_key=API_KEY, api_base=url)
        fetching = Fetching(
            store,
            Config(),
            Metrics(),
            wake_routing=lambda: None,
            fetchers_by_source={"pay": StripeFetcher(settings)},
        )
        fetching.timeout = 0.3  # FETCH_TIMEOUT_SECONDS, scaled down
        try:
            new = NewEvent("pay", "stripe", "t", "evt_slow", {}, thin_event("evt_slow"), _now())
            stored = await store.events.add(new)
            await store.fetches.begin([stored.id])
            ((event, fetch),) = await store.fetches.claim(1, lease=60)
            await fetching.fetch(event, fetch)
            after = await store.fetches.get(stored.id)
            status = (await store.events.get(stored.id)).status  # type: ignore[union-attr]
        finally:
            await fetching.aclose()
            await store.close()

    assert after is not None
    if fetched:
        assert (status, after.error) == ("pending", None)
    else:  # a retryable failure: fetching still, due again after a backoff
        assert (status, after.error) == ("fetching", "no answer within 0.3 s")
        assert after.next_attempt_at is not None


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
