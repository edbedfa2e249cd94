"""Intercom: HMAC-SHA1 of the body with the app's client secret, in `X-Hub-Signature: sha1=HEX`.

The notification's `topic` is the event type; its `id`, signed with the body, is the key.
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
    signed_id,
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

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        return signed_id(dig(payload, "id"), body)

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        return {"X-Hub-Signature": "sha1=" + hmac_hex(self.secrets[0], body, "sha1")}
