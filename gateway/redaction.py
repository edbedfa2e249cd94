"""Which names hold secrets: one policy for log lines, headers and JSON fields, at any depth.

Logs, the admin API and the dashboard all redact through `Redactor`; docs/operations.md lists
the names and patterns below, which match whole names or name endings, never substrings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
Container = dict[Any, Any] | list[Any]

# Names are compared normalised: camelCase split, lower case, `-`, `.` and spaces as `_`
# (`X-Api-Key`, `apiKey` and `api_key` are one name).
NAMES = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "session_token",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
        "cookies",
        "set_cookie",
        "session",
        "session_id",
        "signature",
        "private_key",
        "secret_key",
        "credential",
        "credentials",
    }
)
# Endings that make a name secret: `db_password`, `x_gitlab_token`, `stripe_secret_key`.
# A plural or a count is not a secret: `input_tokens` and `token_count` end otherwise.
SUFFIXES = (
    "_password",
    "_passwd",
    "_secret",
    "_token",
    "_api_key",
    "_apikey",
    "_private_key",
    "_secret_key",
    "_authorization",
    "_cookie",
    "_credentials",
)
# Words that make a name secret wherever they stand: signature headers carry a digest or a
# version after the word (`X-Hub-Signature-256`, `X-Shopify-Hmac-Sha256`), and a signature
# replayed with its body is as good as the secret for that body.
WORDS = frozenset({"signature", "hmac"})

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[-.\s]+")


def normalise(name: str) -> str:
    """`X-Api-Key`, `apiKey`, `API_KEY` → `x_api_key`, `api_key`, `api_key`."""
    return _SEPARATORS.sub("_", _CAMEL.sub("_", name).lower())


# Field names whose verdict a `Redactor` keeps, at most.
KNOWN_NAMES_MAX = 4096


class Redactor:
    """Redacts headers by name and JSON values by key: the built-in policy plus `fields`."""

    def __init__(self, fields: Iterable[str] = ()) -> None:
        self.fields = frozenset(normalise(f) for f in fields)
        # Answers by name: every log line asks again of the same few names (its two regular
        # expressions were a tenth of a `log.record` run, bench/sustain). Bounded: names come
        # from payloads too.
        self._known: dict[str, bool] = {}

    def is_secret(self, name: str) -> bool:
        known = self._known.get(name)
        if known is None:
            if len(self._known) >= KNOWN_NAMES_MAX:
                self._known.clear()
            known = self._known[name] = self._judge(name)
        return known

    def _judge(self, name: str) -> bool:
        normal = normalise(name)
        return (
            normal in NAMES
            or normal in self.fields
            or normal.endswith(SUFFIXES)
            or not WORDS.isdisjoint(normal.split("_"))
        )

    def headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {k: REDACTED if self.is_secret(k) else v for k, v in headers.items()}

    def value(self, value: Any) -> Any:
        """A copy of a JSON-shaped value with secret keys' values redacted, at any depth.

        Walks with an explicit stack: a stored body nested 100,000 levels deep is redacted in
        the same bounded Python stack as a flat one.
        """
        pending: list[tuple[Container, Container]] = []
        root = _copy(value, pending)
        while pending:
            source, target = pending.pop()
            if isinstance(source, dict) and isinstance(target, dict):
                for key, item in source.items():
                    secret = self.is_secret(str(key))
                    target[key] = REDACTED if secret else _copy(item, pending)
            elif isinstance(source, list) and isinstance(target, list):
                target.extend(_copy(item, pending) for item in source)
        return root


def _copy(item: Any, pending: list[tuple[Container, Container]]) -> Any:
    """A leaf as it is; for a container, an empty one, filled when `pending` reaches it."""
    if isinstance(item, dict):
        container: Container = {}
    elif isinstance(item, list):
        container = []
    else:
        return item
    pending.append((item, container))
    return container
