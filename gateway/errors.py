"""The gateway's exception hierarchy, rooted at one `GatewayError`.

    GatewayError
    ├── ConfigError            config or rules do not validate (carries every problem)
    ├── YamlSyntaxError        a YAML file does not parse (file and line; becomes a ConfigError)
    ├── PluginError            an entry point does not load or does not register its name
    ├── RejectedDelivery       a webhook request is refused (carries the reason)
    │   ├── UnknownSource
    │   ├── BodyTooLarge
    │   ├── SignatureInvalid   missing, malformed, stale or wrong signature
    │   ├── UnsupportedMediaType
    │   └── MalformedPayload   body is not what the provider sends (bad JSON, bad UTF-8)
    ├── ClientGone             the sender left before its body was complete: nobody to answer
    ├── NoNewDelivery          `gateway send --new-id` found no change making a new event
    ├── InvalidInput           an admin API request's parameters or body (carries every problem)
    ├── OutOfRange             an admin API path id no record can have (answered as not found)
    ├── ModelError             a model request failed (gateway.assistant.backends; `retryable`)
    ├── ToolError              a tool call failed (gateway.tools; `retryable`, `retry_after`)
    │   ├── PermanentToolError the remote refused for good
    │   └── ServerUnreachable  an MCP server could not be reached: nothing was sent
    ├── FetchError             a thin event's object could not be fetched (`retryable`)
    ├── TemplateError          a rule template failed to compile or evaluate
    ├── UnknownSchedule        no enabled scheduled rule has this name (the scheduler)
    ├── NotFound               an operator named a record that is not there (`kind`, `id`)
    ├── IllegalState           the record's state does not allow the operator's change
    │   └── NotWhatWasShown    an approval names arguments that are not the step's
    ├── UnknownRule            an operator named a rule that is not there (fire)
    ├── ArchiveError           a retention archive cannot be opened, written or read
    ├── ProviderApiError       a provider's API failed a reconciliation's call for good
    ├── ProviderBusy           a provider's API answered a rate limit or 5xx: worth a retry
    └── StoreError
        ├── StoreUnavailable   the database cannot be reached or cannot commit
        │   └── DiskBelowFloor free disk beside the store is under retention.min_free_bytes
        ├── SchemaMismatch     the database schema is not one this version knows
        ├── EventDoesNotFit    a value of a new event breaks a constraint of the events table
        └── WorkerAlreadyRunning  another process runs the worker on this SQLite file

Every exception class of the gateway is defined here; the modules that raise them also
import them by their old names (`gateway.tools.ToolError`).
HTTP status codes are chosen only at the edge (`gateway.ingest.endpoint`, `gateway.api`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


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


class DiskBelowFloor(StoreUnavailable):
    """Free disk space beside the store is under `retention.min_free_bytes`."""

    def __init__(self, free: int, floor: int) -> None:
        self.free = free
        self.floor = floor
        super().__init__(f"{free} bytes free beside the store, below the floor of {floor}")


class ArchiveError(GatewayError):
    """A retention archive cannot be opened, written or read."""


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


class PluginError(GatewayError):
    """An entry point names something that does not load, or does not register its name."""


class InvalidInput(GatewayError):
    """The request's parameters or body are not what the endpoint takes; `problems` says why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class OutOfRange(GatewayError):
    """A path id no record can have (e.g. beyond 64 bits): answered as not found."""


class YamlSyntaxError(GatewayError):
    """A YAML file does not parse; the message names the file and line."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        self.path, self.line = path, line
        super().__init__(f"{path}:{line or '?'}: invalid YAML: {message}")


class UnknownSchedule(GatewayError):
    """No enabled scheduled rule has this name."""

    def __init__(self, rule: str) -> None:
        self.rule = rule
        super().__init__(f"no scheduled rule named {rule!r}")


class TemplateError(GatewayError):
    """A template failed to compile or to evaluate; the message says where and why."""


class ModelError(GatewayError):
    """A model request failed. `retryable` says whether the run may try again later.

    Raised after the backend's own retries are spent (retryable: the run may be retried as a
    whole, after `retry_after` seconds if the server said), or at once for a request the server
    refuses for good (bad request, wrong key, unknown model: not retryable).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


class FetchError(GatewayError):
    """Fetching a thin event's full object from its provider's API failed (`gateway.thin`).

    `retryable`: the API may answer later (unreachable, 5xx, 429: after `retry_after` seconds
    if it said); not retryable: it refused for good (wrong key, no such object).
    """

    def __init__(
        self, event_id: int, message: str, *, retryable: bool, retry_after: float | None = None
    ) -> None:
        self.event_id = event_id
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)


class NoNewDelivery(GatewayError):
    """No change of a payload's headers or body made its provider see a new event."""


class ClientGone(GatewayError):
    """The sender disconnected before the body was complete: there is nobody to answer."""


class WorkerAlreadyRunning(StoreError):
    """Another process already runs the worker on this SQLite database."""

    def __init__(self, database: str, holder: str) -> None:
        self.database = database
        self.holder = holder
        super().__init__(
            f"another gateway worker ({holder}) already uses the SQLite database {database}: "
            "SQLite allows one worker process; start this one with --role ingest (or "
            "--role scheduler), or move the store to PostgreSQL to run several workers"
        )


class ToolError(GatewayError):
    """A tool call failed. `retryable` says whether trying again may succeed.

    A retryable failure of a tool with side effects leaves its outcome unknown: before it is
    tried again, the tool's `recover` check (if any) decides whether it already happened.
    """

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None):
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)


class PermanentToolError(ToolError):
    """The remote refused the call for good (bad request, unknown project): do not retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class KnowledgeError(GatewayError):
    """Knowledge retrieval failed (gateway.knowledge)."""


class UnknownCollection(KnowledgeError):
    """No collection of that name under `knowledge:`."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        super().__init__(
            f"no knowledge collection named {name!r} (known: {', '.join(known) or 'none'})"
        )


class UnreadableFile(KnowledgeError):
    """A knowledge file that cannot be read as its format (a broken PDF, bad encoding)."""


class EmbeddingError(KnowledgeError):
    """The embeddings endpoint failed (after the profile's retries) or answered nonsense."""


class HostedError(KnowledgeError):
    """The Files or Vector Stores API failed (after the profile's retries)."""


class ServerUnreachable(ToolError):
    """An MCP server could not be reached: nothing was sent, so trying again is always safe."""

    def __init__(self, server: str, detail: str) -> None:
        self.server = server
        super().__init__(f"MCP server {server!r} is unreachable (not sent): {detail}")


class ProviderApiError(GatewayError):
    """A provider's API refused or failed a reconciliation's call for good (gateway.reconcile):
    the run fails with this as its error; the next period tries again."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProviderBusy(GatewayError):
    """A provider's API answered something worth trying again (a rate limit, a 5xx, no
    connection): `status`, and the seconds it asked to wait (None: back off). Caught by the
    retry loop of `gateway.reconcile.api`, which raises `ProviderApiError` once tries run out."""

    def __init__(self, status: int, wait: float | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.wait = wait
