"""Intercom: HMAC-SHA1 of the body with the app's client secret, in `X-Hub-Signature: sha1=HEX`.

The notification's `topic` is the event type and its `id` the delivery id.
"""

from __future__ import annotations

from typing import Any

from gateway.ingest.provider import (
    Headers,
    Provider,
    dig,
    hmac_hex,
    malformed,
    match_any,
    require,
)


class Intercom(Provider):
    name = "intercom"

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        header = require(headers, "x-hub-signature")
        scheme, _, signature = header.partition("=")
        if scheme != "sha1":
            raise malformed("X-Hub-Signature must start with sha1=")
        match_any(self.secrets, lambda secret: hmac_hex(secret, body, "sha1"), signature)

    def event_type(self, headers: Headers, payload: Any) -> str:
        return str(dig(payload, "topic") or "notification_event")

    def delivery_id(self, headers: Headers, payload: Any, body: bytes) -> str:
        notification_id = dig(payload, "id")
        return (
            str(notification_id) if notification_id else super().delivery_id(headers, payload, body)
        )

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        return {"X-Hub-Signature": "sha1=" + hmac_hex(self.secrets[0], body, "sha1")}
