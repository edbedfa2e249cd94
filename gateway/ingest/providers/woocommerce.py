"""WooCommerce: base64 HMAC-SHA256 of the body with the webhook secret in `X-WC-Webhook-Signature`.

`X-WC-Webhook-Topic` is the event type, `X-WC-Webhook-Delivery-ID` the id; neither is signed,
so the key is the body with its topic (order.created and order.updated can carry one body).
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


class WooCommerce(Provider):
    name = "woocommerce"

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        signature = require(headers, "x-wc-webhook-signature")
        match_any(self.secrets, lambda secret: hmac_b64(secret, body), signature)

    def event_type(self, headers: Headers, payload: Any) -> str:
        return headers.get("x-wc-webhook-topic", "unknown")

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        return typed_digest(self.event_type(headers, payload), body)

    def delivery_id(self, headers: Headers, payload: Any, body: bytes) -> str:
        return headers.get("x-wc-webhook-delivery-id") or super().delivery_id(
            headers, payload, body
        )

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        return {"X-WC-Webhook-Signature": hmac_b64(self.secrets[0], body)}
