"""GitLab: the configured secret token sent verbatim in `X-Gitlab-Token`, compared constant-time.

With a `signing_token` set, a `webhook-signature` (Standard Webhooks) is verified as well, and
its signed `webhook-id` is the key; a token alone protects no content, so the body is the key.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from gateway.config import SourceConfig
from gateway.ingest.provider import Headers, Provider, match_any, require
from gateway.ingest.providers.standard import (
    asymmetric,
    is_key,
    sign_headers,
    signed_message_id,
    verify_signed,
)


class GitLab(Provider):
    name = "gitlab"
    # The token, the signing token, or both: `check` asks for at least one.
    needs_secret = False
    secret_headers = frozenset({"x-gitlab-token"})

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")

        signing_token: str | None = None

    @classmethod
    def check(cls, source: SourceConfig) -> list[str]:
        problems = super().check(source)
        signing_token = (source.model_extra or {}).get("signing_token")
        if not source.all_secrets and not signing_token:
            problems.append("provider gitlab needs `secret` or `secrets`, or a `signing_token`")
        # GitLab signs `v1` (HMAC) only: a `whpk_`/`whsk_` Ed25519 key is no signing token.
        if isinstance(signing_token, str) and (
            asymmetric(signing_token) or not is_key(signing_token)
        ):
            problems.append("signing_token must be base64, optionally after `whsec_`")
        return problems

    def signed(self, headers: Headers) -> bool:
        """Whether the request is verified as a signed webhook, not by its token alone."""
        return bool(self.settings.signing_token) and "webhook-signature" in headers

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        signing_token: str | None = self.settings.signing_token
        signed = self.signed(headers)
        if self.secrets or not signed:
            token = require(headers, "x-gitlab-token")
            match_any(self.secrets, lambda secret: secret, token)
        if signing_token and signed:
            verify_signed([signing_token], headers, body, now, self.tolerance)

    def event_type(self, headers: Headers, payload: Any) -> str:
        return headers.get("x-gitlab-event", "unknown")

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        if self.signed(headers):
            return signed_message_id(headers)
        return super().dedup_key(headers, payload, body)

    def delivery_id(self, headers: Headers, payload: Any, body: bytes) -> str:
        return (
            headers.get("idempotency-key")
            or headers.get("x-gitlab-event-uuid")
            or super().delivery_id(headers, payload, body)
        )

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        signed: dict[str, str] = {}
        if self.secrets:
            signed["X-Gitlab-Token"] = self.secrets[0]
        if self.settings.signing_token:
            # GitLab uses the delivery's Idempotency-Key as the Standard Webhooks message id.
            given = {k.lower(): v for k, v in headers.items()}
            msg_id = given.get("idempotency-key") or given.get("webhook-id")
            signed |= sign_headers(self.settings.signing_token, body, now, msg_id)
        return signed
