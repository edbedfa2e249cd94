"""Stripe: `Stripe-Signature: t=TS,v1=HEX[,v1=HEX]`, HMAC-SHA256 over `TS.body`.

The `whsec_...` secret is used as-is (not base64-decoded); the event id is the body's `id`.
With `fetch: thin`, the worker fetches a thin event's object before routing (`gateway.thin`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from gateway.ingest.provider import (
    ApiBase,
    Headers,
    Provider,
    check_timestamp,
    dig,
    header_fields,
    hmac_hex,
    malformed,
    match_any,
    parse_int_timestamp,
    require,
    signed_id,
)

# The Stripe API, unless a source's `api_base` points elsewhere (a test's loopback server).
STRIPE_API = "https://api.stripe.com"
# What a thin event (an "event notification", Stripe's 2024+ event destinations) says it is.
THIN_EVENT_OBJECT = "v2.core.event"


class StripeSettings(BaseModel):
    """A Stripe source's settings beside its `secrets`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # `thin`: fetch a thin event's object through the Stripe API before routing it.
    fetch: Literal["thin"] | None = None
    # The secret (or restricted, with read access to events) key the fetch uses.
    api_key: str | None = None
    api_base: ApiBase = STRIPE_API

    @model_validator(mode="after")
    def _fetch_needs_a_key(self) -> StripeSettings:
        if self.fetch and not self.api_key:
            raise ValueError("fetch: thin needs `api_key`, a key that can read events")
        return self


class Stripe(Provider):
    name = "stripe"
    Settings = StripeSettings

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        header = require(headers, "stripe-signature")
        fields = header_fields(header)
        timestamp = fields["t"][-1] if "t" in fields else None
        signatures = fields.get("v1", [])
        if timestamp is None or not signatures:
            raise malformed("Stripe-Signature needs t= and at least one v1=")
        ts = parse_int_timestamp(timestamp)
        signed = timestamp.encode() + b"." + body
        match_any(self.secrets, lambda secret: hmac_hex(secret, signed), signatures)
        # Checked after the signature so a forged request learns nothing about our clock.
        check_timestamp(ts, now, self.tolerance)

    def event_type(self, headers: Headers, payload: Any) -> str:
        return str(dig(payload, "type") or "unknown")

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        # The event id is in the signed body: Stripe's retries repeat it, nobody else can.
        return signed_id(dig(payload, "id"), body)

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        ts = str(int(now))
        signature = hmac_hex(self.secrets[0], ts.encode() + b"." + body)
        return {"Stripe-Signature": f"t={ts},v1={signature}"}
