"""Who may operate the gateway: the admin bearer token, and dashboard sessions derived from it.

A session cookie holds a signed expiry and nonce, never the token; rotating the token ends
every session, a logout ends its own (the dashboard records its nonce in the store). Each
session has its own CSRF token for the dashboard's forms.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request

SESSION_COOKIE = "gateway_session"
SESSION_SECONDS = 12 * 3600


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def bearer(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if there is one."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int


class Sessions:
    """Issues and checks dashboard session cookies, signed with a key derived from the token."""

    def __init__(self, admin_token: str) -> None:
        self._key = hmac.new(
            admin_token.encode("utf-8"), b"gateway dashboard session v1", hashlib.sha256
        ).digest()

    def _sign(self, data: bytes) -> str:
        mac = hmac.new(self._key, data, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")

    def issue(self, now: float | None = None) -> str:
        """A new session cookie value: `expiry.nonce.signature`."""
        expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
        payload = f"{expires}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{self._sign(payload.encode('ascii'))}"

    def check(self, value: str | None, now: float | None = None) -> Session | None:
        """The session a cookie stands for, or None if it is missing, forged or expired."""
        if not value or value.count(".") != 2:
            return None
        payload, _, signature = value.rpartition(".")
        try:
            expected = self._sign(payload.encode("ascii"))
        except UnicodeEncodeError:
            return None
        if not hmac.compare_digest(signature.encode("ascii", "replace"), expected.encode()):
            return None
        expires_text, _, nonce = payload.partition(".")
        if not expires_text.isdigit():
            return None
        expires = int(expires_text)
        if expires < (now if now is not None else time.time()):
            return None
        return Session(nonce=nonce, expires=expires)

    def csrf_token(self, session: Session) -> str:
        """The token a session's forms carry; bound to the session, useless without it."""
        return self._sign(f"csrf.{session.nonce}".encode("ascii"))

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        if not given:
            return False
        return hmac.compare_digest(
            given.encode("utf-8", "replace"), self.csrf_token(session).encode("ascii")
        )
