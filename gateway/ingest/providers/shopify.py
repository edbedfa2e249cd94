"""Shopify: base64 HMAC-SHA256 of the body with the app's client secret.

Every header comes under two spellings: `X-Shopify-*` (webhooks) and `Shopify-*` without the
`X-` (Shopify's newer Events deliveries); either is read, the `X-` one first. `Hmac-Sha256`
is the signature, `Topic` the event type; `Event-Id` (the same across retries of one event)
is the delivery id, `Webhook-Id` the fallback. `Triggered-At` is when Shopify first tried the
event: a delivery later than `stale_after` past it is a late retry, flagged (logged, counted).
No header is signed: the key is the body with its topic (one order body comes under several).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.ingest.provider import (
    Headers,
    Provider,
    hmac_b64,
    match_any,
    require,
    typed_digest,
)


def shopify_header(headers: Headers, name: str) -> str:
    """`X-Shopify-<name>`, else `Shopify-<name>` (lower-case names), else ''."""
    return headers.get(f"x-shopify-{name}") or headers.get(f"shopify-{name}") or ""


class Shopify(Provider):
    name = "shopify"

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")

        # Shopify retries a failed delivery 8 times over 4 hours; one that arrives this many
        # seconds after it was triggered is flagged as a late retry.
        stale_after: int = Field(3600, ge=1)

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        signature = shopify_header(headers, "hmac-sha256") or require(
            headers, "x-shopify-hmac-sha256"
        )
        match_any(self.secrets, lambda secret: hmac_b64(secret, body), signature)

    def event_type(self, headers: Headers, payload: Any) -> str:
        return shopify_header(headers, "topic") or "unknown"

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        # orders/create, orders/paid and orders/updated can carry the same order, byte for
        # byte (Shopify's test notifications always do): the topic keeps them apart.
        return typed_digest(self.event_type(headers, payload), body)

    def delivery_id(self, headers: Headers, payload: Any, body: bytes) -> str:
        return (
            shopify_header(headers, "event-id")
            or shopify_header(headers, "webhook-id")
            or super().delivery_id(headers, payload, body)
        )

    def late_by(self, headers: Headers, now: float) -> float | None:
        triggered = shopify_header(headers, "triggered-at")
        try:
            at = datetime.fromisoformat(triggered)
        except ValueError:  # absent or not ISO 8601: nothing to flag, the event is kept
            return None
        age = now - (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
        return age if age > self.settings.stale_after else None

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        return {"X-Shopify-Hmac-Sha256": hmac_b64(self.secrets[0], body)}
