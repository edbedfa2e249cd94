"""Bad requests get the documented 4xx, never a 500, and store nothing."""

from __future__ import annotations

import time

import httpx2
import pytest

from gateway.config import SourceConfig
from gateway.ingest.provider import PROVIDERS
from tests.conftest import Gateway
from tests.fixtures import SIGNED_AT, TEST_SOURCES, requires_fixtures

pytestmark = requires_fixtures


def signed(source: str, body: bytes, **headers: str) -> dict[str, str]:
    """Headers that make `body` verify for `source` at the frozen test clock."""
    import gateway.ingest.providers  # noqa: F401

    settings = SourceConfig.model_validate(TEST_SOURCES[source])
    provider = PROVIDERS[settings.provider](settings)
    return {
        "Content-Type": "application/json",
        **headers,
        **provider.sign(body, dict(headers), float(SIGNED_AT)),
    }


GITHUB = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"}

CASES = [
    # (name, source, body, headers, status, error)
    ("bad JSON", "ci", b'{"a": ', signed("ci", b'{"a": ', **GITHUB), 400, "malformed_payload"),
    (
        "invalid UTF-8",
        "ci",
        b'{"a": "\xff\xfe"}',
        signed("ci", b'{"a": "\xff\xfe"}', **GITHUB),
        400,
        "malformed_payload",
    ),
    ("empty body", "ci", b"", signed("ci", b"", **GITHUB), 400, "malformed_payload"),
    (
        "wrong content type",
        "ci",
        b'{"a": 1}',
        {**signed("ci", b'{"a": 1}', **GITHUB), "Content-Type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    (
        "no signature header",
        "ci",
        b'{"a": 1}',
        {"Content-Type": "application/json", **GITHUB},
        401,
        "missing_signature",
    ),
    (
        "garbage signature",
        "ci",
        b'{"a": 1}',
        {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=zz", **GITHUB},
        401,
        "signature_mismatch",
    ),
    (
        "signature without scheme",
        "ci",
        b'{"a": 1}',
        {"Content-Type": "application/json", "X-Hub-Signature-256": "deadbeef", **GITHUB},
        401,
        "malformed_signature",
    ),
    (
        "stripe header without t=",
        "stripe",
        b'{"id": "evt_1"}',
        {"Content-Type": "application/json", "Stripe-Signature": "v1=abc"},
        401,
        "malformed_signature",
    ),
    (
        "stripe timestamp not a number",
        "stripe",
        b'{"id": "evt_1"}',
        {"Content-Type": "application/json", "Stripe-Signature": "t=soon,v1=abc"},
        401,
        "malformed_signature",
    ),
    (
        "gitlab token wrong",
        "gitlab",
        b'{"a": 1}',
        {"Content-Type": "application/json", "X-Gitlab-Token": "guess"},
        401,
        "signature_mismatch",
    ),
    (
        "jenkins without credentials",
        "jenkins",
        b'{"name": "x"}',
        {"Content-Type": "application/json"},
        401,
        "missing_signature",
    ),
    (
        "jenkins basic auth garbage",
        "jenkins",
        b'{"name": "x"}',
        {"Content-Type": "application/json", "Authorization": "Basic !!!"},
        401,
        None,
    ),
    (
        "header with non-ASCII bytes",
        "shop",
        b'{"a": 1}',
        {"Content-Type": "application/json", "X-Shopify-Hmac-Sha256": "é".encode()},
        401,
        None,
    ),
]


@pytest.mark.parametrize(
    ("source", "body", "headers", "status", "error"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_request_is_refused_and_stores_nothing(
    gateway: Gateway,
    source: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    error: str | None,
) -> None:
    response = gateway.post(source, body, headers)

    assert response.status_code == status, response.text
    if error:
        assert response.json()["error"] == error
    assert gateway.count() == 0


def test_body_over_the_limit_is_413_from_content_length(gateway: Gateway) -> None:
    body = b"{" + b" " * (1024 * 1024) + b"}"

    response = gateway.post("ci", body, signed("ci", body, **GITHUB))

    assert response.status_code == 413
    assert gateway.count() == 0


def test_chunked_body_over_the_limit_is_413_without_reading_it_all(gateway: Gateway) -> None:
    sent = 0

    def chunks():  # type: ignore[no-untyped-def]
        nonlocal sent
        for _ in range(64):  # 64 x 64 KiB = 4 MiB offered, four times the limit
            sent += 1
            yield b" " * 65536

    try:
        response = gateway.client.post(
            "/hooks/ci", content=chunks(), headers={"Content-Type": "application/json", **GITHUB}
        )
        assert response.status_code == 413
    except httpx2.HTTPError:
        pass  # the server may close the connection before the client finishes sending
    assert gateway.count() == 0


def test_get_on_a_hook_is_405(gateway: Gateway) -> None:
    assert gateway.client.get("/hooks/ci").status_code == 405


def test_signed_request_from_the_past_replayed_later_is_401(gateway: Gateway) -> None:
    body = b'{"type": "contact.created"}'
    headers = {"Content-Type": "application/json", "webhook-id": "msg_replay"}
    settings = SourceConfig.model_validate(TEST_SOURCES["hooks"])
    provider = PROVIDERS["standard"](settings)
    headers.update(provider.sign(body, headers, time.time() - 3600 * 24 * 400))

    response = gateway.post("hooks", body, headers)

    assert response.status_code == 401
    assert response.json()["error"] == "stale_timestamp"
    assert gateway.count() == 0
