"""Slack: `X-Slack-Signature: v0=HEX`, HMAC-SHA256 over `v0:TS:body` with the signing secret.

TS is `X-Slack-Request-Timestamp`; a `url_verification` request is answered with its challenge.
"""

from __future__ import annotations

from typing import Any

from gateway.ingest.provider import (
    Headers,
    Provider,
    check_timestamp,
    dig,
    hmac_hex,
    malformed,
    match_any,
    parse_int_timestamp,
    require,
    signed_id,
)


class Slack(Provider):
    name = "slack"

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        header = require(headers, "x-slack-signature")
        timestamp = require(headers, "x-slack-request-timestamp")
        version, _, signature = header.partition("=")
        if version != "v0":
            raise malformed("X-Slack-Signature must start with v0=")
        ts = parse_int_timestamp(timestamp)
        signed = b"v0:" + timestamp.encode() + b":" + body
        match_any(self.secrets, lambda secret: hmac_hex(secret, signed), signature)
        # Checked after the signature so a forged request learns nothing about our clock.
        check_timestamp(ts, now, self.tolerance)

    def event_type(self, headers: Headers, payload: Any) -> str:
        # An Events API envelope says only `event_callback`; what happened is the inner event.
        if dig(payload, "type") == "event_callback":
            return str(dig(payload, "event", "type") or "event_callback")
        return str(dig(payload, "type") or "unknown")

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        return signed_id(dig(payload, "event_id"), body)

    def challenge(self, payload: Any) -> dict[str, Any] | None:
        if dig(payload, "type") == "url_verification":
            return {"challenge": dig(payload, "challenge")}
        return None

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        ts = str(int(now))
        signature = hmac_hex(self.secrets[0], b"v0:" + ts.encode() + b":" + body)
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={signature}"}
