"""PagerDuty (webhooks v3): `X-PagerDuty-Signature: v1=HEX[,v1=HEX]`, HMAC-SHA256 of the body.

The secret is used as raw bytes (not base64-decoded); the body's `event.id` is the key.
"""

from __future__ import annotations

from typing import Any

from gateway.ingest.provider import (
    Headers,
    Provider,
    dig,
    header_fields,
    hmac_hex,
    malformed,
    match_any,
    require,
    signed_id,
)


class PagerDuty(Provider):
    name = "pagerduty"

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        header = require(headers, "x-pagerduty-signature")
        # Several v1 entries appear while a subscription's secret is being rotated.
        signatures = header_fields(header).get("v1", [])
        if not signatures:
            raise malformed("X-PagerDuty-Signature needs at least one v1=")
        match_any(self.secrets, lambda secret: hmac_hex(secret, body), signatures)

    def event_type(self, headers: Headers, payload: Any) -> str:
        return str(dig(payload, "event", "event_type") or "unknown")

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        return signed_id(dig(payload, "event", "id"), body)

    def delivery_id(self, headers: Headers, payload: Any, body: bytes) -> str:
        if dig(payload, "event", "id"):
            return self.dedup_key(headers, payload, body)
        return headers.get("x-webhook-id") or super().delivery_id(headers, payload, body)

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        return {"X-PagerDuty-Signature": "v1=" + hmac_hex(self.secrets[0], body)}
