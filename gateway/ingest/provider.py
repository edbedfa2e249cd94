"""The provider interface and its registry: one small class per webhook sender.

A provider verifies a request exactly as its sender signs it, names the event type, the key
that deduplicates it (from signed material only) and the sender's delivery id (a hint), and can
sign a body the same way (for `gateway send` and the tests).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from gateway import plugins
from gateway.config import SourceConfig
from gateway.errors import SignatureInvalid

Headers = Mapping[str, str]
"""Request headers with lower-case names."""

# Filled from the `gateway.providers` entry points on first read; a class registers by its name.
PROVIDERS: plugins.Registry[type[Provider]] = plugins.registry(plugins.PROVIDERS)


def _http_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


# A provider API's address in a source's settings (`api_base`): http(s) only.
ApiBase = Annotated[str, AfterValidator(_http_url)]


class NoSettings(BaseModel):
    """Providers with no settings beyond `secret`/`secrets`/`tolerance` accept no other keys."""

    model_config = ConfigDict(extra="forbid")


class Provider:
    """Base of every provider. Subclasses set `name` and are registered by it; a package's
    provider is found through its `gateway.providers` entry point of that name."""

    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]] = NoSettings
    needs_secret: ClassVar[bool] = True
    # Header names (lower case) that carry credentials: never stored, never logged. Usually
    # set on the class; a provider whose header names are configurable sets it per instance.
    secret_headers: frozenset[str] = frozenset()
    # Whether the body must be JSON (all built-ins send JSON).
    json_body: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            PROVIDERS.add(cls.name, cls)

    def __init__(self, source: SourceConfig) -> None:
        self.source = source
        self.secrets = source.all_secrets
        self.tolerance = source.tolerance
        self.settings: Any = self.Settings.model_validate(source.model_extra or {})

    @classmethod
    def check(cls, source: SourceConfig) -> list[str]:
        """Problems with a source's configuration, as sentences for `gateway check`."""
        problems = []
        if cls.needs_secret and not source.all_secrets:
            problems.append(f"provider {cls.name} needs `secret` or `secrets`")
        try:
            cls.Settings.model_validate(source.model_extra or {})
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"])
                problems.append(f"{field}: {err['msg']}")
        return problems

    # -- the questions every request answers --------------------------------------------------

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        """Raise `SignatureInvalid` unless the request is signed by one of the secrets."""
        raise NotImplementedError

    def event_type(self, headers: Headers, payload: Any) -> str:
        raise NotImplementedError

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        """What makes two deliveries one event, read from what `verify` checked and nothing else.

        By default the body's digest: for a sender that signs only the body, a body already
        stored is a duplicate whatever the (unsigned) delivery-id header says.
        """
        return body_digest(body)

    def delivery_id(self, headers: Headers, payload: Any, body: bytes) -> str:
        """The sender's id for this delivery: shown, searched and logged, never a key, since
        it may come from an unsigned header. Defaults to the dedup key."""
        return self.dedup_key(headers, payload, body)

    def late_by(self, headers: Headers, now: float) -> float | None:
        """Seconds since the sender first tried this event, when it arrives later than the
        provider counts as a normal retry (a stale retry, flagged); None otherwise."""
        return None

    def challenge(self, payload: Any) -> dict[str, Any] | None:
        """A handshake answer (Slack `url_verification`) instead of storing; None for events."""
        return None

    # -- the other side, for `gateway send` and tests ----------------------------------------

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        """Headers that make `body` verify, as the sender would set them at time `now`."""
        raise NotImplementedError


# -- building blocks shared by the providers ---------------------------------------------------


def body_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def typed_digest(event_type: str, body: bytes) -> str:
    """The digest of a body and the event type it came under, for senders that send one body
    under several types named in an unsigned header (Shopify's and WooCommerce's order topics):
    a replay under its own type is a duplicate, while no real delivery of the same body under
    another type is dropped."""
    # Header values cannot hold a newline, so the two parts cannot run into each other.
    return "sha256:" + hashlib.sha256(event_type.encode() + b"\n" + body).hexdigest()


def signed_id(value: Any, body: bytes) -> str:
    """An id read from the signed body, or the body's digest where the body has none."""
    return str(value) if value else body_digest(body)


def hmac_hex(key: bytes | str, message: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(_bytes(key), message, algorithm).hexdigest()


def hmac_b64(key: bytes | str, message: bytes, algorithm: str = "sha256") -> str:
    return base64.b64encode(hmac.new(_bytes(key), message, algorithm).digest()).decode()


def require(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if not value:
        raise SignatureInvalid(f"missing {name} header", reason="missing_signature")
    return value


def match_any(
    secrets: list[str], expected: Callable[[str], str], candidates: list[str] | str
) -> None:
    """Accept when any secret's expected signature equals any candidate (constant time)."""
    if isinstance(candidates, str):
        candidates = [candidates]
    ok = False
    for secret in secrets:
        want = expected(secret).encode()
        for candidate in candidates:
            # No early exit: the time taken does not depend on which secret matched.
            ok |= hmac.compare_digest(want, candidate.encode())
    if not ok:
        raise SignatureInvalid("signature does not match", reason="signature_mismatch")


def header_fields(header: str) -> dict[str, list[str]]:
    """A `key=value,key=value` signature header (Stripe, CircleCI, PagerDuty): every value of
    each key, in order (several `v1` appear while a secret is being rotated)."""
    fields: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        fields.setdefault(key, []).append(value)
    return fields


def check_timestamp(timestamp: float, now: float, tolerance: int) -> None:
    if tolerance and abs(now - timestamp) > tolerance:
        raise SignatureInvalid(
            f"timestamp {int(timestamp)} is {int(now - timestamp)}s from now "
            f"(tolerance {tolerance}s)",
            reason="stale_timestamp",
        )


def parse_int_timestamp(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SignatureInvalid(
            "timestamp is not an integer", reason="malformed_signature"
        ) from None


def dig(payload: Any, *path: str) -> Any:
    """`payload[a][b]...`, or None where any step is missing."""
    for key in path:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(key)
    return payload


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def malformed(detail: str) -> SignatureInvalid:
    """The signature header is present but not in the provider's format."""
    return SignatureInvalid(detail, reason="malformed_signature")
