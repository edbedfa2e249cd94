"""POST /hooks/{source} against a real server: verified, stored once, and only then 2xx."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict

import pytest

from gateway.store import Store
from tests.conftest import Gateway
from tests.fixtures import Fixture, deliverable, load, requires_fixtures

pytestmark = requires_fixtures
STORED = [f for f in deliverable() if f.id != "slack/url_verification"]
# GitLab's stock webhooks and Jenkins' notification plugin send a shared token, not a signature.
TOKEN_ONLY = {"gitlab", "jenkins"}
SIGNED = [f for f in STORED if f.folder not in TOKEN_ONLY]
TOKENED = [f for f in STORED if f.folder in TOKEN_ONLY]


def stored_events(gateway: Gateway) -> list[dict[str, object]]:
    async def fetch() -> list[dict[str, object]]:
        store = Store(gateway.app.state.gateway.config.store_url)
        try:
            return [asdict(e) for e in await store.events.find(limit=1000)]
        finally:
            await store.engine.dispose()

    return asyncio.run(fetch())


@pytest.mark.parametrize("fixture", STORED, ids=lambda f: f.id)
def test_every_fixture_is_accepted_and_stored_byte_for_byte(
    gateway: Gateway, fixture: Fixture
) -> None:
    response = gateway.deliver(fixture)

    assert response.status_code == 202, response.text
    [event] = stored_events(gateway)
    assert event["id"] == response.json()["id"]
    assert event["body"] == fixture.body
    assert event["source"] == fixture.source
    assert event["status"] == "pending"


@pytest.mark.parametrize("fixture", STORED, ids=lambda f: f.id)
def test_redelivered_fixture_is_stored_once(gateway: Gateway, fixture: Fixture) -> None:
    first = gateway.deliver(fixture)
    second = gateway.deliver(fixture)

    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"id": first.json()["id"], "duplicate": True}
    assert gateway.count() == 1


@pytest.mark.parametrize("fixture", SIGNED, ids=lambda f: f.id)
def test_one_changed_body_byte_is_401_and_nothing_stored(
    gateway: Gateway, fixture: Fixture
) -> None:
    body = bytearray(fixture.body)
    body[len(body) // 2] ^= 0x01
    gateway.now = fixture.signed_at

    response = gateway.post(fixture.source, bytes(body), fixture.headers)

    assert response.status_code == 401
    assert gateway.count() == 0


@pytest.mark.parametrize("fixture", TOKENED, ids=lambda f: f.id)
def test_wrong_shared_token_is_401_and_nothing_stored(gateway: Gateway, fixture: Fixture) -> None:
    headers = dict(fixture.headers)
    if "X-Gitlab-Token" in headers:
        headers["X-Gitlab-Token"] = "not-the-token"
    else:
        headers["Authorization"] = "Basic amVua2luczp3cm9uZw=="  # jenkins:wrong

    response = gateway.post(fixture.source, fixture.body, headers)

    assert response.status_code == 401
    assert gateway.count() == 0


def test_shopify_order_keeps_type_delivery_id_and_headers_without_secrets(
    gateway: Gateway,
) -> None:
    fixture = load("shopify", "orders_create")

    gateway.post("shop", fixture.body, fixture.headers)

    [event] = stored_events(gateway)
    assert event["type"] == "orders/create"
    assert event["delivery_id"] == "fd03f2b0-9ebe-5bcc-a501-2f6e94734674"
    assert event["headers"]["x-shopify-shop-domain"] == "gateway-test.myshopify.com"


@pytest.mark.parametrize(
    ("folder", "event", "secret_header"),
    [
        ("gitlab", "pipeline_hook", "x-gitlab-token"),
        ("jenkins", "notification.build_completed", "authorization"),
    ],
)
def test_credentials_sent_in_headers_are_never_stored(
    gateway: Gateway, folder: str, event: str, secret_header: str
) -> None:
    fixture = load(folder, event)

    assert gateway.deliver(fixture).status_code == 202

    [stored] = stored_events(gateway)
    assert secret_header not in stored["headers"]
    assert "gitlab-test-secret-token" not in json.dumps(stored["headers"])


def test_slack_url_verification_answers_the_challenge_and_stores_nothing(
    gateway: Gateway,
) -> None:
    fixture = load("slack", "url_verification")

    response = gateway.post("slack", fixture.body, fixture.headers)

    assert response.status_code == 200
    assert response.json() == {"challenge": json.loads(fixture.body)["challenge"]}
    assert gateway.count() == 0


def test_unknown_source_is_404(gateway: Gateway) -> None:
    fixture = load("shopify", "orders_create")

    response = gateway.post("nope", fixture.body, fixture.headers)

    assert response.status_code == 404
    assert response.json()["error"] == "unknown_source"


def test_stale_stripe_signature_is_401(gateway: Gateway) -> None:
    fixture = load("stripe", "invoice.payment_failed")
    gateway.now = fixture.signed_at + 301

    response = gateway.post("stripe", fixture.body, fixture.headers)

    assert response.status_code == 401
    assert response.json()["error"] == "stale_timestamp"
    assert gateway.count() == 0


def test_health_and_readiness(gateway: Gateway) -> None:
    assert gateway.client.get("/healthz").json()["status"] == "ok"
    assert gateway.client.get("/readyz").status_code == 200


def test_rejections_are_counted_by_reason(gateway: Gateway) -> None:
    fixture = load("github", "push.branch")
    gateway.post("ci", fixture.body + b" ", fixture.headers)
    gateway.post("ci", fixture.body, {"Content-Type": "application/json"})

    metrics = gateway.client.get("/metrics").text

    assert (
        'gateway_webhook_rejections_total{reason="signature_mismatch",source="ci"} 1.0' in metrics
    )
    assert 'gateway_webhook_rejections_total{reason="missing_signature",source="ci"} 1.0' in metrics
    assert 'gateway_webhook_requests_total{source="ci",status="401"} 2.0' in metrics
