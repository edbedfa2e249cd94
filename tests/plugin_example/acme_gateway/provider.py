"""The `acme` provider: Acme signs the body with HMAC-SHA256, hex, in `X-Acme-Signature`.

The event type is the body's `type`, so it is signed too.
"""

from __future__ import annotations

from typing import Any

from gateway.ingest.provider import Headers, Provider, hmac_hex, match_any, require


class Acme(Provider):
    name = "acme"

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        signature = require(headers, "x-acme-signature")
        match_any(self.secrets, lambda secret: hmac_hex(secret, body), signature)

    def event_type(self, headers: Headers, payload: Any) -> str:
        return str(payload.get("type", "unknown")) if isinstance(payload, dict) else "unknown"

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        return {"X-Acme-Signature": hmac_hex(self.secrets[0], body)}
