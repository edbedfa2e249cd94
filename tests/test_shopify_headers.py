"""Shopify's header spellings (`X-Shopify-*` and the newer `Shopify-*`) and late retries
flagged from the triggered-at header."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

import gateway.ingest.providers  # noqa: F401  (fills the registry)
from gateway.config import SourceConfig
from gateway.errors import SignatureInvalid
from gateway.ingest.provider import PROVIDERS, Provider
from tests.fixtures import TEST_SOURCES, load, requires_fixtures
from tests.live import live_gateway
from tests.test_metrics import sample
from tests.test_send_new_id import RULES

pytestmark = requires_fixtures

TRIGGERED = datetime(2026, 11, 25, 12, tzinfo=UTC).timestamp()  # the fixtures' Triggered-At


def shop(**settings: Any) -> Provider:
    return PROVIDERS["shopify"](SourceConfig.model_validate({**TEST_SOURCES["shop"], **settings}))


def unprefixed(headers: dict[str, str]) -> dict[str, str]:
    """The fixture's headers as Shopify's Events deliveries spell them: no `X-`."""
    return {k.lower().removeprefix("x-"): v for k, v in headers.items()}


def test_headers_without_the_x_prefix_verify_type_and_identify_the_same() -> None:
    fixture = load("shopify", "orders_create")
    headers, payload = unprefixed(fixture.headers), orjson.loads(fixture.body)
    assert "shopify-hmac-sha256" in headers and "x-shopify-hmac-sha256" not in headers

    shop().verify(headers, fixture.body, TRIGGERED)
    assert shop().event_type(headers, payload) == "orders/create"
    assert shop().delivery_id(headers, payload, fixture.body) == (
        "fd03f2b0-9ebe-5bcc-a501-2f6e94734674"
    )


def test_an_unprefixed_signature_is_checked_not_trusted() -> None:
    fixture = load("shopify", "orders_create")
    headers = unprefixed(fixture.headers)

    with pytest.raises(SignatureInvalid, match="does not match"):
        shop().verify(headers, fixture.body + b" ", TRIGGERED)
    del headers["shopify-hmac-sha256"]
    with pytest.raises(SignatureInvalid, match="missing"):
        shop().verify(headers, fixture.body, TRIGGERED)


def test_shopify_webhook_id_is_the_delivery_id_without_an_event_id() -> None:
    fixture = load("shopify", "orders_create")
    headers = unprefixed(fixture.headers)
    del headers["shopify-event-id"]

    assert shop().delivery_id(headers, {}, fixture.body) == "bdc803d0-df75-5e68-a8c8-a4038ffe32ae"


@pytest.mark.parametrize("spelling", ["x-shopify-triggered-at", "shopify-triggered-at"])
def test_a_delivery_is_late_only_past_stale_after(spelling: str) -> None:
    headers = {spelling: "2026-11-25T12:00:00.000Z"}

    assert shop().late_by(headers, TRIGGERED + 3600) is None  # at the edge: a normal retry
    assert shop().late_by(headers, TRIGGERED + 3601) == 3601
    assert shop(stale_after=60).late_by(headers, TRIGGERED + 61) == 61


@pytest.mark.parametrize("value", [None, "", "yesterday", "2026-11-25 noon"])
def test_no_or_an_unreadable_triggered_at_flags_nothing(value: str | None) -> None:
    headers = {} if value is None else {"x-shopify-triggered-at": value}
    assert shop().late_by(headers, TRIGGERED + 10**6) is None


def test_stale_after_must_be_a_positive_number_of_seconds() -> None:
    problems = PROVIDERS["shopify"].check(
        SourceConfig.model_validate({**TEST_SOURCES["shop"], "stale_after": 0})
    )
    assert problems == ["stale_after: Input should be greater than or equal to 1"]


def test_a_late_retry_is_stored_and_counted_a_prompt_one_is_not(tmp_path: Path) -> None:
    fixture = load("shopify", "orders_create")
    provider = shop()

    def post(event_id: str, triggered: float) -> int:
        at = datetime.fromtimestamp(triggered, UTC).isoformat().replace("+00:00", "Z")
        headers = unprefixed(fixture.headers) | {
            "shopify-event-id": event_id,
            "shopify-triggered-at": at,
        }
        body = orjson.dumps({**orjson.loads(fixture.body), "name": event_id})
        headers |= {k.lower().removeprefix("x-"): v for k, v in provider.sign(body, {}, 0).items()}
        return gw.client.post("/hooks/shop", content=body, headers=headers).status_code

    with live_gateway(tmp_path, RULES) as gw:
        prompt, late = post("prompt", time.time() - 60), post("late", time.time() - 7200)
        text = gw.client.get("/metrics").text

    assert (prompt, late) == (202, 202)  # a late retry is stored all the same
    assert sample(text, 'gateway_webhook_stale_retries_total{source="shop"}') == 1
