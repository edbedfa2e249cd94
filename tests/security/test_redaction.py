"""One redaction policy for logs, the admin API and the dashboard, and how deep it reaches.

Secrets are found by exact names and documented patterns, not by substrings: token *counts*
stay visible. A stored body of any depth is redacted without recursion.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway import log
from gateway.redaction import NAMES, SUFFIXES, WORDS, Redactor
from gateway.store import NewEvent, Store
from tests.live import LiveGateway, live_gateway

TOKEN = "redaction-test-token"
SECRET_NAMES = [
    "api_token",
    "apiToken",
    "access_token",
    "client_secret",
    "password",
    "db_password",
    "api_key",
    "X-Api-Key",
    "Authorization",
    "Proxy-Authorization",
    "Cookie",
    "Set-Cookie",
    "session",
    "private_key",
    "credentials",
    "X-Shopify-Hmac-Sha256",
    "X-Hub-Signature-256",
    "Stripe-Signature",
    "X-Gitlab-Token",
]
COUNT_NAMES = ["tokens", "input_tokens", "output_tokens", "max_tokens", "token_count"]
PLAIN_NAMES = ["X-Shopify-Topic", "Content-Type", "X-Request-Id", "name", "email", *COUNT_NAMES]


def logged(redact_fields: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    """The JSON line the gateway's logger writes for one event with these fields."""
    out = io.StringIO()
    log.configure("info", redact_fields=redact_fields or [], stream=out)
    try:
        structlog.get_logger("test").info("test.event", **fields)
    finally:
        structlog.reset_defaults()  # other tests log through structlog's defaults
    line: dict[str, Any] = json.loads(out.getvalue().strip().splitlines()[-1])
    return line


def test_token_counts_are_logged_as_numbers() -> None:
    line = logged(**{name: 123 for name in COUNT_NAMES})

    assert {name: line[name] for name in COUNT_NAMES} == dict.fromkeys(COUNT_NAMES, 123)


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_credential_fields_are_redacted_in_logs(name: str) -> None:
    assert logged(**{name: "s3cr3t-value"})[name] == "[redacted]"


def test_configured_fields_are_redacted_in_logs_whatever_their_spelling() -> None:
    line = logged(["customer_email"], customer_email="a@b.c", customerEmail="d@e.f")

    assert (line["customer_email"], line["customerEmail"]) == ("[redacted]", "[redacted]")


def test_credentials_nested_in_a_logged_value_are_redacted() -> None:
    line = logged(headers={"Authorization": "Bearer x", "X-Request-Id": "r1"})

    assert line["headers"] == {"Authorization": "[redacted]", "X-Request-Id": "r1"}


@pytest.mark.parametrize("name", SECRET_NAMES + PLAIN_NAMES)
def test_logs_and_the_admin_views_make_the_same_decision(name: str) -> None:
    redactor = Redactor(["customer_email"])
    in_logs = logged(["customer_email"], **{name: "v"})[name] == "[redacted]"
    as_header = redactor.headers({name: "v"})[name] == "[redacted]"
    as_field = redactor.value({name: "v"})[name] == "[redacted]"

    assert in_logs == as_header == as_field == (name in SECRET_NAMES)


def test_operations_doc_lists_every_redacted_name_and_ending() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    listed = {*NAMES, *SUFFIXES, *WORDS}

    assert {name for name in listed if f"`{name}`" not in doc} == set()


def _nested(depth: int, leaf: dict[str, Any]) -> dict[str, Any]:
    value = leaf
    for _ in range(depth - 1):
        value = {"child": value}
    return value


def _leaf(value: Any) -> Any:
    while "child" in value:
        value = value["child"]
    return value


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_a_deeply_nested_value_is_redacted_without_recursion(depth: int) -> None:
    clean = Redactor().value(_nested(depth, {"api_token": "t", "n": 1}))

    assert _leaf(clean) == {"api_token": "[redacted]", "n": 1}


# --------------------------------------------------------- pages of a deep stored body


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[LiveGateway]:
    with live_gateway(tmp_path, "[]", admin_token=TOKEN) as gw:
        yield gw


def store_directly(gw: LiveGateway, body: bytes) -> int:
    """An event written straight into the store, as one stored before ingest limited depth."""

    async def add() -> int:
        store = Store(gw.app.state.gateway.config.store_url)
        await store.open(migrate=False)
        try:
            stored = await store.events.add(
                NewEvent(
                    source="shop",
                    provider="shopify",
                    type="orders/create",
                    delivery_id="deep-1",
                    headers={"x-shopify-topic": "orders/create"},
                    body=body,
                    received_at=datetime.now(UTC),
                )
            )
        finally:
            await store.close()
        return stored.id

    return asyncio.run(add())


DEEP_BODY = b'{"a":' * 1_000 + b"1" + b"}" * 1_000


def test_api_event_page_of_a_1000_deep_body_answers_200(gateway: LiveGateway) -> None:
    event_id = store_directly(gateway, DEEP_BODY)

    response = gateway.client.get(
        f"/api/events/{event_id}", headers={"Authorization": f"Bearer {TOKEN}"}
    )

    assert response.status_code == 200, response.text[:500]


def test_dashboard_event_page_of_a_1000_deep_body_answers_200(gateway: LiveGateway) -> None:
    event_id = store_directly(gateway, DEEP_BODY)
    login = gateway.client.post("/ui/login", data={"token": TOKEN})
    cookie = login.headers["set-cookie"].split(";")[0]

    response = gateway.client.get(f"/ui/events/{event_id}", headers={"Cookie": cookie})

    assert response.status_code == 200, response.text[:500]
