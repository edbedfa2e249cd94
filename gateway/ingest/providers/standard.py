"""Standard Webhooks: `id.timestamp.body` signed, each signature in `webhook-signature`.

`v1,` is base64 HMAC-SHA256 with a `whsec_` secret (base64 after the prefix); `v1a,` is a
base64 Ed25519 signature, checked with a `whpk_` public key (or the public half of a `whsk_`
secret key, which is what `gateway send` signs with). A source may list keys of both kinds.
Svix's `svix-*` names also work. The message id is signed: it is both the key and the delivery
id, read under the verified names.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from gateway.config import SourceConfig
from gateway.errors import ConfigError
from gateway.ingest.provider import (
    ApiBase,
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

# `cryptography` (OpenSSL's bindings, ~7 MB resident) is imported by the first Ed25519 key,
# not by every gateway that registers this provider (docs/benchmarks.md, memory).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )


class StandardSettings(BaseModel):
    """A Standard Webhooks source's settings beside its `secrets`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # `openai`: OpenAI platform webhooks, whose object the worker fetches through the OpenAI
    # API before routing (`gateway.thin`), with `api_key` from `api_base` (OpenAI's if unset).
    fetch: Literal["openai"] | None = None
    api_key: str | None = None
    api_base: ApiBase | None = None

    @model_validator(mode="after")
    def _fetch_needs_a_key(self) -> StandardSettings:
        if self.fetch and not self.api_key:
            raise ValueError("fetch: openai needs `api_key`, a key that can read the objects")
        return self


class Standard(Provider):
    name = "standard"
    Settings = StandardSettings

    @classmethod
    def check(cls, source: SourceConfig) -> list[str]:
        problems = super().check(source)
        if not all(is_key(secret) for secret in source.all_secrets):
            # Never echo the secret itself: these sentences end up in logs.
            problems.append(
                "a Standard Webhooks secret must be base64, optionally after `whsec_`, or an"
                " Ed25519 key: `whpk_` (32 bytes, base64) or `whsk_` (32 or 64 bytes, base64)"
            )
        return problems

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        verify_signed(self.secrets, headers, body, now, self.tolerance)

    def event_type(self, headers: Headers, payload: Any) -> str:
        return str(dig(payload, "type") or "unknown")

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        return signed_message_id(headers) or super().dedup_key(headers, payload, body)

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        given = {k.lower(): v for k, v in headers.items()}
        # The first key that can sign: a `whpk_` public key only verifies.
        secret = next((s for s in self.secrets if not s.startswith("whpk_")), None)
        if secret is None:
            raise ConfigError(["only whpk_ public keys here: signing needs a whsk_ or whsec_ key"])
        return sign_headers(secret, body, now, given.get("webhook-id") or given.get("svix-id"))


# -- shared with GitLab's signing token, which follows the same scheme -------------------------


def signing_key(secret: str) -> bytes:
    """The HMAC key: the secret base64-decoded after an optional `whsec_` prefix."""
    return base64.b64decode(secret.removeprefix("whsec_"), validate=True)


def private_key(secret: str) -> Ed25519PrivateKey:
    """A `whsk_` secret key: base64 of the 32-byte seed, or of seed + public key (64 bytes, as
    libsodium keeps it; the public half must then belong to the seed)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = base64.b64decode(secret.removeprefix("whsk_"), validate=True)
    if len(raw) not in (32, 64):
        raise ValueError("a whsk_ key is 32 or 64 bytes")
    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if len(raw) == 64 and raw[32:] != key.public_key().public_bytes_raw():
        raise ValueError("the public half of this whsk_ key is not the seed's")
    return key


def public_key(secret: str) -> Ed25519PublicKey:
    """The key that checks `v1a` signatures: a `whpk_` key, or a `whsk_` key's public half."""
    if secret.startswith("whsk_"):
        return private_key(secret).public_key()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    raw = base64.b64decode(secret.removeprefix("whpk_"), validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)  # ValueError unless 32 bytes


def asymmetric(secret: str) -> bool:
    return secret.startswith(("whpk_", "whsk_"))


def is_key(secret: str) -> bool:
    try:
        public_key(secret) if asymmetric(secret) else signing_key(secret)
    except (ValueError, binascii.Error):
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
    """Raise `SignatureInvalid` unless one `v1` entry is signed by one of the HMAC `secrets`
    or one `v1a` entry by one of the Ed25519 keys among them."""
    prefix = signed_prefix(headers)
    header = require(headers, f"{prefix}signature")
    msg_id, timestamp = signed_message_id(headers), headers.get(f"{prefix}timestamp")
    if not msg_id or not timestamp:
        raise malformed(f"{prefix}signature needs {prefix}id and {prefix}timestamp")
    entries = [e.partition(",") for e in header.split()]
    hmac_keys = [s for s in secrets if not asymmetric(s)]
    ed_keys = [public_key(s) for s in secrets if asymmetric(s)]
    # Only the versions we hold a key for are ours to check; others may sit beside them.
    v1 = [sig for version, _, sig in entries if version == "v1"] if hmac_keys else []
    v1a = [sig for version, _, sig in entries if version == "v1a"] if ed_keys else []
    if not v1 and not v1a:
        wanted = " or ".join(v for v, keys in (("v1", hmac_keys), ("v1a", ed_keys)) if keys)
        raise malformed(f"{prefix}signature has no {wanted},... entry")
    ts = parse_int_timestamp(timestamp)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    if not (v1a and _any_ed25519(ed_keys, signed, v1a)):
        match_any(hmac_keys, lambda secret: hmac_b64(signing_key(secret), signed), v1)
    # Checked after the signature so a forged request learns nothing about our clock.
    check_timestamp(ts, now, tolerance)


def _any_ed25519(keys: list[Ed25519PublicKey], signed: bytes, signatures: list[str]) -> bool:
    """Whether any `v1a` signature verifies under any key (public keys: no timing secret)."""
    from cryptography.exceptions import InvalidSignature  # loaded with the keys

    for signature in signatures:
        try:
            raw = base64.b64decode(signature, validate=True)
        except binascii.Error:
            continue
        for key in keys:
            try:
                key.verify(raw, signed)
            except InvalidSignature:
                continue
            return True
    return False


def sign_headers(secret: str, body: bytes, now: float, msg_id: str | None = None) -> dict[str, str]:
    """The `webhook-*` headers for `body` at time `now`; a fresh message id unless given one.
    A `whsk_` secret signs `v1a` (Ed25519), any other `v1` (HMAC)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = str(int(now))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    if secret.startswith("whsk_"):
        entry = "v1a," + base64.b64encode(private_key(secret).sign(signed)).decode()
    else:
        entry = "v1," + hmac_b64(signing_key(secret), signed)
    return {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": entry}
