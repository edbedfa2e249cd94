"""The gateway's exception hierarchy, rooted at one `GatewayError`.

    GatewayError
    ├── ConfigError            config or rules do not validate (carries every problem)
    ├── RejectedDelivery       a webhook request is refused (carries the reason)
    │   ├── UnknownSource
    │   ├── BodyTooLarge
    │   ├── SignatureInvalid   missing, malformed, stale or wrong signature
    │   ├── UnsupportedMediaType
    │   └── MalformedPayload   body is not what the provider sends (bad JSON, bad UTF-8)
    ├── ModelError             a model request failed (gateway.assistant.backends; `retryable`)
    ├── ToolError              a tool call failed (gateway.tools; `retryable`, `retry_after`)
    │   └── PermanentToolError the remote refused for good
    ├── TemplateError          a rule template failed to compile or evaluate
    ├── NotFound               an operator named a record that is not there (`kind`, `id`)
    ├── IllegalState           the record's state does not allow the operator's change
    │   └── NotWhatWasShown    an approval names arguments that are not the step's
    ├── UnknownRule            an operator named a rule that is not there (fire)
    └── StoreError
        ├── StoreUnavailable   the database cannot be reached or cannot commit
        ├── SchemaMismatch     the database schema is not one this version knows
        └── EventDoesNotFit    a value of a new event breaks a constraint of the events table

HTTP status codes are chosen only at the edge (`gateway.ingest.endpoint`, `gateway.api`).
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration (or a rule file) is invalid; `problems` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class RejectedDelivery(GatewayError):
    """A webhook request that is refused; `reason` is a short stable label for logs and metrics."""

    reason = "rejected"

    def __init__(self, detail: str, *, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        self.detail = detail
        super().__init__(detail)


class UnknownSource(RejectedDelivery):
    reason = "unknown_source"


class BodyTooLarge(RejectedDelivery):
    reason = "body_too_large"


class SignatureInvalid(RejectedDelivery):
    reason = "bad_signature"


class UnsupportedMediaType(RejectedDelivery):
    reason = "unsupported_media_type"


class MalformedPayload(RejectedDelivery):
    reason = "malformed_payload"


class StoreError(GatewayError):
    """A failure of the event store."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or cannot commit right now."""


class EventDoesNotFit(StoreError):
    """A new event has a value the events table cannot hold (too long, a NUL, not UTF-8);
    the message names the field and the limit. Refused before it joins a batch."""


class SchemaMismatch(StoreError):
    """The database holds a schema revision this version does not know."""

    def __init__(self, revision: str | None, expected: str) -> None:
        self.revision = revision
        self.expected = expected
        super().__init__(
            f"database schema is at revision {revision!r}, this gateway expects {expected!r}: "
            "run `gateway db upgrade` (or upgrade the gateway)"
        )


class NotFound(GatewayError):
    """No record of this kind has this id."""

    def __init__(self, kind: str, id: int) -> None:
        self.kind = kind
        self.id = id
        super().__init__(f"no {kind} {id}")


class IllegalState(GatewayError):
    """The record exists, but its state does not allow the change (approve a finished step)."""

    def __init__(self, kind: str, id: int, detail: str) -> None:
        self.kind = kind
        self.id = id
        super().__init__(detail)


class NotWhatWasShown(IllegalState):
    """An approval names arguments that are not the step's: the approver saw something else
    (a stale page), or the step changed after the model proposed it."""

    def __init__(self, step_id: int, detail: str) -> None:
        super().__init__("step", step_id, detail)


class UnknownRule(GatewayError):
    """An operator named a rule the gateway does not have (or not of the kind asked for)."""
