"""Zendesk: base64 HMAC-SHA256 of `TIMESTAMP + BODY` in `X-Zendesk-Webhook-Signature`.

TIMESTAMP is the raw `X-Zendesk-Webhook-Signature-Timestamp` header, an ISO 8601 time; the
body's `id` is the key, the unsigned invocation id only the delivery id shown.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.ingest.provider import (
    Headers,
    Provider,
    check_timestamp,
    dig,
    hmac_b64,
    malformed,
    match_any,
    require,
    signed_id,
)


class Zendesk(Provider):
    name = "zendesk"

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        signature = require(headers, "x-zendesk-webhook-signature")
        timestamp = require(headers, "x-zendesk-webhook-signature-timestamp")
        signed_at = _parse_time(timestamp)
        # Zendesk's docs example vector signs BODY + TIMESTAMP; its formula and real
        # deliveries use TIMESTAMP + BODY, so only that order is accepted.
        signed = timestamp.encode() + body
        match_any(self.secrets, lambda secret: hmac_b64(secret, signed), signature)
        # Checked after the signature so a forged request learns nothing about our clock.
        check_timestamp(signed_at, now, self.tolerance)

    def event_type(self, headers: Headers, payload: Any) -> str:
        return str(dig(payload, "type") or "unknown")

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        # The body's id is signed; the invocation id beside the signature is not.
        return signed_id(dig(payload, "id"), body)

    def delivery_id(self, headers: Headers, payload: Any, body: bytes) -> str:
        return headers.get("x-zendesk-webhook-invocation-id") or super().delivery_id(
            headers, payload, body
        )

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        timestamp = datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "X-Zendesk-Webhook-Signature": hmac_b64(self.secrets[0], timestamp.encode() + body),
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
        }


def _parse_time(value: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise malformed("X-Zendesk-Webhook-Signature-Timestamp is not an ISO 8601 time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
