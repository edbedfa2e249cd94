"""Jenkins (notification plugin): no signature, only HTTP Basic auth from the endpoint URL.

The secret is the `user:password` pair, compared constant-time with the decoded credentials.
"""

from __future__ import annotations

import base64
from typing import Any

from gateway.ingest.provider import Headers, Provider, dig, malformed, match_any, require


class Jenkins(Provider):
    name = "jenkins"
    secret_headers = frozenset({"authorization"})

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        header = require(headers, "authorization")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            raise malformed("Authorization must be Basic")
        try:
            credentials = base64.b64decode(encoded.strip(), validate=True).decode()
        except ValueError:  # bad base64 (binascii.Error) or bad UTF-8
            raise malformed("Authorization Basic credentials are not base64 text") from None
        match_any(self.secrets, lambda secret: secret, credentials)

    def event_type(self, headers: Headers, payload: Any) -> str:
        phase = dig(payload, "build", "phase")
        return f"build.{str(phase).lower()}" if phase else "unknown"

    def dedup_key(self, headers: Headers, payload: Any, body: bytes) -> str:
        # Nothing is signed: the credentials authenticate the request, not the body, so this
        # key is as trusted as the request itself.
        job, number, phase = (
            dig(payload, "name"),
            dig(payload, "build", "number"),
            dig(payload, "build", "phase"),
        )
        # The plugin sends no id; a job's build passes through each phase once.
        if job and number is not None and phase:
            return f"{job}#{number}:{phase}"
        return super().dedup_key(headers, payload, body)

    def sign(self, body: bytes, headers: dict[str, str], now: float) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(self.secrets[0].encode()).decode()}
