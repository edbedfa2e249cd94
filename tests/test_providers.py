"""Each provider verifies, types and identifies its real deliveries as the sender means them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import gateway.ingest.providers  # noqa: F401  (fills the registry)
from gateway.config import SourceConfig
from gateway.errors import SignatureInvalid
from gateway.ingest.provider import PROVIDERS, Provider, body_digest, typed_digest
from tests.fixtures import TEST_SOURCES, Fixture, deliverable, load, requires_fixtures

pytestmark = requires_fixtures

# What each provider's documentation says the event type and the delivery id of a fixture are.
EXPECTED = {
    "circleci/workflow-completed": ("workflow-completed", "630a6132-5bf1-3600-b26d-a020d41358f9"),
    "github/issues.opened": ("issues", "0690490a-08d0-5f2c-a22d-2bbdf3a3bbd4"),
    "github/push.branch": ("push", "cff3ed38-db6c-54ac-a938-16c7a2e07f1a"),
    "github/workflow_job.completed_failure": (
        "workflow_job",
        "fcc4e8b4-e070-5390-ad5d-c7072cb724d5",
    ),
    "github/workflow_run.completed_success": (
        "workflow_run",
        "22ec951d-8664-5fd9-af43-fe24db1423d1",
    ),
    "gitlab/pipeline_hook": ("Pipeline Hook", "a65212c6-3a67-5d45-a60b-db69357a70b4"),
    "intercom/conversation.user.created": (
        "conversation.user.created",
        "notif_3ac27816-d27c-45fd-a65a-bbaf021cf780",
    ),
    "jenkins/notification.build_completed": ("build.completed", "asgard#18:COMPLETED"),
    "pagerduty/incident.priority_updated": (
        "incident.priority_updated",
        "01BWDWL3NYY7LUFPZCC28QUCMK",
    ),
    "shopify/customers_create": ("customers/create", "cee7aeae-a6d4-5efe-a0eb-2af3604ad83e"),
    "shopify/orders_create": ("orders/create", "fd03f2b0-9ebe-5bcc-a501-2f6e94734674"),
    "shopify/orders_paid": ("orders/paid", "f68b9007-d842-5964-a63d-2a4ec6041ba6"),
    "slack/event_callback.message": ("message", "Ev0PV52K21"),
    "standard-webhooks/contact.created": ("contact.created", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"),
    "stripe/invoice.payment_failed": ("invoice.payment_failed", "evt_1Pgc76B7WZ01zgkWwyRHS12y"),
    "stripe/payment_intent.succeeded": (
        "payment_intent.succeeded",
        "evt_1Pgc76B7WZ01zgkWwyRHS12y",
    ),
    "woocommerce/order.created": ("order.created", "b44ca22efc6c6d8082c2201d9b0cb354"),
    "zendesk/ticket.created": ("zen:event-type:ticket.created", "8350205582"),
}
IDENTIFIED = [f for f in deliverable() if f.id in EXPECTED]
# What deduplicates each fixture: an id the provider signed, else its body (with the topic,
# where one body comes under several topics). Never an unsigned header.
BODY, BODY_AND_TOPIC = "body", "body and topic"
DEDUP = {
    "circleci/workflow-completed": "630a6132-5bf1-3600-b26d-a020d41358f9",
    "github/issues.opened": BODY,
    "github/push.branch": BODY,
    "github/workflow_job.completed_failure": BODY,
    "github/workflow_run.completed_success": BODY,
    "gitlab/pipeline_hook": BODY,  # token mode: the token signs nothing
    "intercom/conversation.user.created": "notif_3ac27816-d27c-45fd-a65a-bbaf021cf780",
    "jenkins/notification.build_completed": "asgard#18:COMPLETED",
    "pagerduty/incident.priority_updated": "01BWDWL3NYY7LUFPZCC28QUCMK",
    "shopify/customers_create": BODY_AND_TOPIC,
    "shopify/orders_create": BODY_AND_TOPIC,
    "shopify/orders_paid": BODY_AND_TOPIC,
    "slack/event_callback.message": "Ev0PV52K21",
    "standard-webhooks/contact.created": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    "stripe/invoice.payment_failed": "evt_1Pgc76B7WZ01zgkWwyRHS12y",
    "stripe/payment_intent.succeeded": "evt_1Pgc76B7WZ01zgkWwyRHS12y",
    "woocommerce/order.created": BODY_AND_TOPIC,
    "zendesk/ticket.created": "01HNXXXX-CTEXAMPLE",  # the body's id, not the invocation id
}


def provider_for(source: str, **changes: Any) -> Provider:
    config = SourceConfig.model_validate({**TEST_SOURCES[source], **changes})
    return PROVIDERS[config.provider](config)


def new_secret(fixture: Fixture) -> str:
    """A secret the fixture was not signed with, in the form its provider takes."""
    if fixture.folder == "standard-webhooks":  # Standard Webhooks keys are base64
        return "whsec_bmV3LXNlY3JldC1rZXktMzJieXRlcy0hISE="
    return "a-brand-new-secret"


def lowered(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def test_every_fixture_folder_has_a_provider() -> None:
    assert {f.folder for f in deliverable()} <= {f.id.split("/")[0] for f in IDENTIFIED}
    assert set(EXPECTED) == set(DEDUP) == {f.id for f in IDENTIFIED}


@pytest.mark.parametrize("fixture", IDENTIFIED, ids=lambda f: f.id)
def test_event_type_and_delivery_id_are_the_providers_own(fixture: Fixture) -> None:
    provider = provider_for(fixture.source)
    headers = lowered(fixture.headers)
    payload = orjson.loads(fixture.body)

    provider.verify(headers, fixture.body, fixture.signed_at)

    assert (
        provider.event_type(headers, payload),
        provider.delivery_id(headers, payload, fixture.body),
    ) == EXPECTED[fixture.id]


@pytest.mark.parametrize("fixture", IDENTIFIED, ids=lambda f: f.id)
def test_dedup_key_is_what_the_provider_signed(fixture: Fixture) -> None:
    provider = provider_for(fixture.source)
    headers = lowered(fixture.headers)
    payload = orjson.loads(fixture.body)
    expected = {
        BODY: body_digest(fixture.body),
        BODY_AND_TOPIC: typed_digest(provider.event_type(headers, payload), fixture.body),
    }.get(DEDUP[fixture.id], DEDUP[fixture.id])

    assert provider.dedup_key(headers, payload, fixture.body) == expected


@pytest.mark.parametrize("fixture", deliverable(), ids=lambda f: f.id)
def test_rotation_accepts_the_old_secret_beside_a_new_one(fixture: Fixture) -> None:
    old = TEST_SOURCES[fixture.source]["secret"]
    provider = provider_for(fixture.source, secret=None, secrets=[new_secret(fixture), old])

    provider.verify(lowered(fixture.headers), fixture.body, fixture.signed_at)


@pytest.mark.parametrize("fixture", deliverable(), ids=lambda f: f.id)
def test_a_secret_that_was_rotated_out_is_refused(fixture: Fixture) -> None:
    provider = provider_for(fixture.source, secret=new_secret(fixture))

    with pytest.raises(SignatureInvalid):
        provider.verify(lowered(fixture.headers), fixture.body, fixture.signed_at)


@pytest.mark.parametrize("fixture", deliverable(), ids=lambda f: f.id)
def test_what_gateway_send_signs_the_provider_verifies(fixture: Fixture) -> None:
    provider = provider_for(fixture.source)
    body = fixture.body.replace(b"{", b'{"resent": true, ', 1)
    now = 1_800_000_000.0
    unsigned = {
        name: value
        for name, value in fixture.headers.items()
        if name.lower() not in provider.secret_headers and "signature" not in name.lower()
    }
    headers = lowered({**unsigned, **provider.sign(body, unsigned, now)})

    provider.verify(headers, body, now)


def test_standard_webhooks_accepts_svix_header_names() -> None:
    fixture = load("standard-webhooks", "contact.created")
    provider = provider_for("hooks")
    svix = {
        name.lower().replace("webhook-", "svix-"): value for name, value in fixture.headers.items()
    }

    provider.verify(svix, fixture.body, fixture.signed_at)
    assert provider.delivery_id(svix, orjson.loads(fixture.body), fixture.body) == (
        "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    )


def test_standard_webhooks_accepts_any_of_several_listed_signatures() -> None:
    fixture = load("standard-webhooks", "contact.created")
    headers = lowered(fixture.headers)
    headers["webhook-signature"] = "v1,bm90LXRoaXMtb25l " + headers["webhook-signature"]

    provider_for("hooks").verify(headers, fixture.body, fixture.signed_at)


@pytest.mark.parametrize("source", ["stripe", "slack", "hooks"])
def test_timestamp_outside_the_tolerance_is_refused_and_a_wider_one_accepts_it(
    source: str,
) -> None:
    folder = {"stripe": "stripe", "slack": "slack", "hooks": "standard-webhooks"}[source]
    fixture = next(f for f in deliverable() if f.folder == folder)
    headers = lowered(fixture.headers)
    late = fixture.signed_at + 3600

    with pytest.raises(SignatureInvalid, match="tolerance"):
        provider_for(source).verify(headers, fixture.body, late)
    provider_for(source, tolerance=7200).verify(headers, fixture.body, late)


def test_zendesk_docs_vector_signed_body_first_is_refused() -> None:
    fixture = load("zendesk", "docs_test_vector")
    provider = provider_for("support", secret="HRkRd4BeOAoUkfZr-mhauJT64rvBASlJRoIyPsd3zeA=")

    with pytest.raises(SignatureInvalid):
        provider.verify(lowered(fixture.headers), fixture.body, fixture.signed_at)


def test_generic_hmac_mode_reads_type_and_id_from_configured_places() -> None:
    config = SourceConfig.model_validate(
        {
            "provider": "generic",
            "secret": "s3cret",
            "header": "X-Hub-Sig",
            "event_type_field": "meta.kind",
            "delivery_id_header": "X-Delivery",
        }
    )
    provider = PROVIDERS["generic"](config)
    body = b'{"meta": {"kind": "build.failed"}}'
    headers = lowered({"X-Delivery": "d-1", **provider.sign(body, {}, 0)})

    provider.verify(headers, body, 0)
    assert provider.event_type(headers, orjson.loads(body)) == "build.failed"
    assert provider.delivery_id(headers, {}, body) == "d-1"
    with pytest.raises(SignatureInvalid):
        provider.verify(headers, body + b" ", 0)


def test_generic_token_mode_keeps_the_token_header_secret() -> None:
    config = SourceConfig.model_validate(
        {"provider": "generic", "secret": "tok", "mode": "token", "token_header": "X-Api-Key"}
    )
    provider = PROVIDERS["generic"](config)

    provider.verify({"x-api-key": "tok"}, b"{}", 0)
    assert "x-api-key" in provider.secret_headers
    with pytest.raises(SignatureInvalid):
        provider.verify({"x-api-key": "nope"}, b"{}", 0)
