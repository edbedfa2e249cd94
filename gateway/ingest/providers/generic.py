"""Generic: hex HMAC-SHA256 of the body in a configurable header, or a shared token sent verbatim.

Header names, the event type's header or JSON field and the delivery id header are settings;
in both modes the body is the key (no header is signed, and a token signs nothing).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from gateway.config import SourceConfig
from gateway.ingest.provider import Headers, Provider, dig, hmac_hex, match_any, require


class Generic(Provider):
    name = "generic"

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")

        mode: Literal["hmac", "token"] = "hmac"
        header: str = "X-Signature"
        prefix: str = "sha256="
        token_header: str = "X-Webhook-Token"  # noqa: S105 (a header name, not a secret)
        event_type_header: str | None = None
        event_type_field: str | None = None
        delivery_id_header: str = "Idempotency-Key"

    def __init__(self, source: SourceConfig) -> None:
        super().__init__(source)
        if self.settings.mode == "token":
            # The token is the credential itself: keep it out of the stored headers.
            self.secret_headers = frozenset({self.settings.token_header.lower()})

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        if self.settings.mode == "token":
            token = require(headers, self.settings.token_header.lower())
            match_any(self.secrets, lambda secret: secret, token)
            return
        header = require(headers, self.settings.header.lower())
        # Senders differ on whether they write the prefix; accept both.
        signature = header.removeprefix(self.settings.prefix)
        match_any(self.secrets, lambda secret: hmac_hex(secret, body), signature)

    def event_type(self, headers: Headers, payload: Any) -> str:
        if self.settings.event_type_header:
            found = headers.get(self.settings.event_type_header.lower())
            if found:
                return found
        if self.settings.event_type_field:
            value = dig(payload, *self.settings.event_type_field.split("."))
            if value is not None and value != "":
                return str(value)
        return "generic"

    def delivery_id(self, headers: Headers, payload: Any, body: bytes) -> str:
        return (
            headers.get(self.settings.delivery_id_header.lower())
            or headers.get("x-request-id")
            or super().delivery_id(headers, payload, body)
        )

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        if self.settings.mode == "token":
            return {self.settings.token_header: self.secrets[0]}
        return {self.settings.header: self.settings.prefix + hmac_hex(self.secrets[0], body)}
