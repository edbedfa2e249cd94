"""Standard Webhooks: base64 HMAC-SHA256 of `id.timestamp.body` in `webhook-signature: v1,...`.

The key is the secret base64-decoded after its `whsec_` prefix; Svix's `svix-*` names also work.
The message id is signed: it is both the key and the delivery id, read under the verified names.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from gateway.config import SourceConfig
from gateway.ingest.provider import (
    Headers,
    Provider,
    check_timestamp,
    dig,
    hmac_b64,
    malformed,
    match_any,
    parse_int_timestamp,
    require,
)


class Standard(Provider):
    name = "standard"

    @classmethod
    def check(cls, source: SourceConfig) -> list[str]:
        problems = super().check(source)
        if not all(is_key(secret) for secret in source.all_secrets):
            # Never echo the secret itself: these sentences end up in logs.
            problems.append("a Standard Webhooks secret must be base64, optionally after `whsec_`")
        return problems

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        verify_signed(self.secrets, headers, body, now, self.tolerance)

    def event_type(self, headers: Headers, payload: Any) -> str:
        return str(dig(payload, "type") or "unknown")

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        return signed_message_id(headers) or super().dedup_key(headers, payload, body)

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        given = {k.lower(): v for k, v in headers.items()}
        return sign_headers(
            self.secrets[0], body, now, given.get("webhook-id") or given.get("svix-id")
        )


# -- shared with GitLab's signing token, which follows the same scheme -------------------------


def signing_key(secret: str) -> bytes:
    """The HMAC key: the secret base64-decoded after an optional `whsec_` prefix."""
    return base64.b64decode(secret.removeprefix("whsec_"), validate=True)


def is_key(secret: str) -> bool:
    try:
        signing_key(secret)
    except ValueError:
        return False
    return True


def signed_prefix(headers: Headers) -> str:
    """The header names a request is verified under: Svix sends the same scheme as `svix-*`,
    used only when no `webhook-signature` is present. Ids under the other names are unsigned."""
    svix = "svix-signature" in headers and "webhook-signature" not in headers
    return "svix-" if svix else "webhook-"


def signed_message_id(headers: Headers) -> str:
    """The message id `verify_signed` checks: the one under the verified names, never the
    other (a `webhook-id` beside `svix-*` headers is not signed)."""
    return headers.get(f"{signed_prefix(headers)}id", "")


def verify_signed(
    secrets: list[str], headers: Headers, body: bytes, now: float, tolerance: int
) -> None:
    """Raise `SignatureInvalid` unless one `v1` entry is signed by one of `secrets`."""
    prefix = signed_prefix(headers)
    header = require(headers, f"{prefix}signature")
    msg_id, timestamp = signed_message_id(headers), headers.get(f"{prefix}timestamp")
    if not msg_id or not timestamp:
        raise malformed(f"{prefix}signature needs {prefix}id and {prefix}timestamp")
    # Other versions (e.g. v1a, asymmetric) may sit beside v1; only v1 is ours to check.
    signatures = [
        sig for version, _, sig in (e.partition(",") for e in header.split()) if version == "v1"
    ]
    if not signatures:
        raise malformed(f"{prefix}signature has no v1,... entry")
    ts = parse_int_timestamp(timestamp)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    match_any(secrets, lambda secret: hmac_b64(signing_key(secret), signed), signatures)
    # Checked after the signature so a forged request learns nothing about our clock.
    check_timestamp(ts, now, tolerance)


def sign_headers(secret: str, body: bytes, now: float, msg_id: str | None = None) -> dict[str, str]:
    """The `webhook-*` headers for `body` at time `now`; a fresh message id unless given one."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = str(int(now))
    signature = hmac_b64(signing_key(secret), f"{msg_id}.{timestamp}.".encode() + body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature}",
    }
