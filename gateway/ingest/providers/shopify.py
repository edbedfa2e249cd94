"""Shopify: base64 HMAC-SHA256 of the body with the app's client secret.

The header is `X-Shopify-Hmac-Sha256`; the topic is the event type; `X-Shopify-Event-Id`
(the same across retries of one event) is the delivery id, `X-Shopify-Webhook-Id` the fallback.
No header is signed: the key is the body with its topic (one order body comes under several).
"""

from __future__ import annotations

from typing import Any

from gateway.ingest.provider import (
    Headers,
    Provider,
    hmac_b64,
    match_any,
    require,
    typed_digest,
)


class Shopify(Provider):
    name = "shopify"

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        signature = require(headers, "x-shopify-hmac-sha256")
        match_any(self.secrets, lambda secret: hmac_b64(secret, body), signature)

    def event_type(self, headers: Headers, payload: Any) -> str:
        return headers.get("x-shopify-topic", "unknown")

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        # orders/create, orders/paid and orders/updated can carry the same order, byte for
        # byte (Shopify's test notifications always do): the topic keeps them apart.
        return typed_digest(self.event_type(headers, payload), body)

    def delivery_id(self, headers: Headers, payload: Any, body: bytes) -> str:
        return (
            headers.get("x-shopify-event-id")
            or headers.get("x-shopify-webhook-id")
            or super().delivery_id(headers, payload, body)
        )

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        return {"X-Shopify-Hmac-Sha256": hmac_b64(self.secrets[0], body)}
