"""GitHub: HMAC-SHA256 of the body, hex, in `X-Hub-Signature-256: sha256=...`.

Only the body is signed: `X-GitHub-Event` and `X-GitHub-Delivery` are hints, the body is the key.
"""

from __future__ import annotations

from typing import Any

from gateway.ingest.provider import Headers, Provider, hmac_hex, malformed, match_any, require


class GitHub(Provider):
    name = "github"

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        header = require(headers, "x-hub-signature-256")
        scheme, _, signature = header.partition("=")
        if scheme != "sha256":
            raise malformed("X-Hub-Signature-256 must start with sha256=")
        match_any(self.secrets, lambda secret: hmac_hex(secret, body), signature)

    def event_type(self, headers: Headers, payload: Any) -> str:
        return headers.get("x-github-event", "unknown")

    def delivery_id(self, headers: Headers, payload: Any, body: bytes) -> str:
        return headers.get("x-github-delivery") or super().delivery_id(headers, payload, body)

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        return {"X-Hub-Signature-256": "sha256=" + hmac_hex(self.secrets[0], body)}
