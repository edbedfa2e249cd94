"""CircleCI: `circleci-signature: v1=HEX[,v1=HEX]`, HMAC-SHA256 of the body with the secret.

`circleci-event-type` (e.g. `workflow-completed`) is the event type, the body's `id` the key.
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


class CircleCI(Provider):
    name = "circleci"

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        header = require(headers, "circleci-signature")
        signatures = header_fields(header).get("v1", [])
        if not signatures:
            raise malformed("circleci-signature needs at least one v1=")
        match_any(self.secrets, lambda secret: hmac_hex(secret, body), signatures)

    def event_type(self, headers: Headers, payload: Any) -> str:
        return headers.get("circleci-event-type") or str(dig(payload, "type") or "unknown")

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        return signed_id(dig(payload, "id"), body)

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        return {"circleci-signature": "v1=" + hmac_hex(self.secrets[0], body)}
