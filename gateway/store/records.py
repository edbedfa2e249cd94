"""The records the store hands in and out: plain frozen dataclasses, no ORM sessions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.store.status import EventStatus, RunStatus


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A verified delivery, about to be stored.

    `dedup_key` decides duplicates (unique per source): the provider reads it from signed
    material. `delivery_id` is the sender's id, a hint for people. Events the gateway makes
    itself (schedules) leave `dedup_key` empty: their delivery id is their key.
    """

    source: str
    provider: str
    type: str
    delivery_id: str
    headers: dict[str, str]
    body: bytes
    received_at: datetime
    dedup_key: str = ""
    # `webhook`, or `reconcile` for an event found through the provider's API.
    received_via: str = "webhook"
    # Pending until routed; `unmatched` when the writer already knew no rule would take it
    # (`EventStore.settle_unmatched`), so routing it is skipped altogether.
    status: str = EventStatus.PENDING.value

    def __post_init__(self) -> None:
        if not self.dedup_key:
            object.__setattr__(self, "dedup_key", self.delivery_id)


@dataclass(frozen=True, slots=True)
class Stored:
    """The outcome of storing a `NewEvent`: its id, and whether it was already stored."""

    id: int
    event: NewEvent
    duplicate: bool
    # For a duplicate: the delivery id the stored event came with.
    stored_delivery_id: str | None = None

    @property
    def replayed(self) -> bool:
        """The same signed content under another delivery id: not the sender's redelivery
        (which repeats its id) but someone sending a captured request again."""
        return self.duplicate and self.stored_delivery_id != self.event.delivery_id


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    source: str
    provider: str
    type: str
    delivery_id: str
    received_at: datetime
    headers: dict[str, str]
    body: bytes
    status: str
    # Retention emptied its body and headers (`gateway archive restore` brings them back).
    pruned: bool = False
    # A thin event's full object, fetched before routing (`gateway.thin`); None for the rest.
    fetched: Any = None
    # `webhook`, or `reconcile` for an event reconciliation found through the provider's API.
    received_via: str = "webhook"

    @classmethod
    def from_row(cls, row: Any) -> Event:
        return cls(
            id=row.id,
            source=row.source,
            provider=row.provider,
            type=row.type,
            delivery_id=row.delivery_id,
            received_at=utc(row.received_at),  # type: ignore[arg-type]
            headers=dict(row.headers),
            body=bytes(row.body),
            status=row.status,
            pruned=getattr(row, "pruned_at", None) is not None,
            fetched=getattr(row, "fetched", None),
            received_via=getattr(row, "received_via", None) or "webhook",
        )

    @classmethod
    def just_stored(cls, stored: Stored) -> Event:
        """A just-committed event as a read would return it, without the read."""
        new = stored.event
        return cls(stored.id, new.source, new.provider, new.type, new.delivery_id,
                   new.received_at, new.headers, new.body, new.status,
                   received_via=new.received_via)  # fmt: skip


def utc(value: datetime | None) -> datetime | None:
    """Datetimes read back from SQLite have no zone; the store writes UTC only."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True, slots=True)
class NewRun:
    event_id: int
    rule: str
    kind: str
    mode: str = "live"
    ordering_key: str | None = None
    status: RunStatus = RunStatus.PENDING
    error: str | None = None
    thread_key: str | None = None


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    event_id: int
    rule: str
    kind: str
    mode: str
    status: str
    ordering_key: str | None
    attempt: int
    next_attempt_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    thread_key: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    # Set by a claim: the run never started before, so it has no journal yet.
    fresh: bool = False
    # When its current series of failures began (None: it has not failed since it started).
    retry_since: datetime | None = None

    @classmethod
    def from_row(cls, row: Any, *, fresh: bool = False) -> Run:
        return cls(
            id=row.id,
            event_id=row.event_id,
            rule=row.rule,
            kind=row.kind,
            mode=row.mode,
            status=row.status,
            ordering_key=row.ordering_key,
            attempt=row.attempt,
            next_attempt_at=utc(row.next_attempt_at),
            created_at=utc(row.created_at),  # type: ignore[arg-type]
            started_at=utc(row.started_at),
            finished_at=utc(row.finished_at),
            error=row.error,
            thread_key=row.thread_key,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cost=row.cost,
            retry_since=utc(getattr(row, "retry_since", None)),
            fresh=fresh,
        )


@dataclass(frozen=True, slots=True)
class Step:
    id: int
    run_id: int
    position: int
    kind: str
    tool: str | None
    arguments: Any
    idempotency_key: str
    status: str
    result: Any
    error: str | None
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    model: str | None = None
    call_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    decision: str | None = None
    decided_by: str | None = None
    reason: str | None = None
    # `call_digest` of the call when it was proposed for approval, and the one an approval was
    # given for: the run makes the call only if its arguments still have that digest.
    arguments_digest: str | None = None
    approved_digest: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Step:
        return cls(
            id=row.id,
            run_id=row.run_id,
            position=row.position,
            kind=row.kind,
            tool=row.tool,
            arguments=row.arguments,
            idempotency_key=row.idempotency_key,
            status=row.status,
            result=row.result,
            error=row.error,
            attempt=row.attempt,
            started_at=utc(row.started_at),  # type: ignore[arg-type]
            finished_at=utc(row.finished_at),
            duration_ms=row.duration_ms,
            model=row.model,
            call_id=row.call_id,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cost=row.cost,
            decision=row.decision,
            decided_by=row.decided_by,
            reason=row.reason,
            arguments_digest=row.arguments_digest,
            approved_digest=row.approved_digest,
        )


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the store knows of one scheduled rule: its last firing and its next fire time."""

    rule: str
    last_fire_at: datetime | None
    last_event_id: int | None
    last_result: str | None
    next_fire_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> ScheduleState:
        return cls(
            rule=row.rule,
            last_fire_at=utc(row.last_fire_at),
            last_event_id=row.last_event_id,
            last_result=row.last_result,
            next_fire_at=utc(row.next_fire_at),
            updated_at=utc(row.updated_at),  # type: ignore[arg-type]
        )


def call_digest(tool: str | None, arguments: Any) -> str:
    """The identity of a call: SHA-256 (hex) of its tool and validated arguments as canonical
    JSON. An approval is bound to it; a run also uses it to spot a call it already made."""
    canonical = json.dumps(
        {"tool": tool, "arguments": arguments},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class NewPassage:
    """A passage of a knowledge file, about to be stored: where it is, its text, its vector."""

    position: int
    heading: str
    line_start: int
    line_end: int
    text: str
    page: int | None = None
    # float32 values, little-endian (`gateway.knowledge.ranking.pack`); None: lexical only.
    embedding: bytes | None = None


@dataclass(frozen=True, slots=True)
class Passage:
    """A stored passage, with its file's path: what a search hands out and cites."""

    id: int
    collection: str
    path: str
    position: int
    heading: str
    line_start: int
    line_end: int
    page: int | None
    text: str


@dataclass(frozen=True, slots=True)
class KnowledgeFile:
    """An indexed file of a collection: the hash of what was indexed, and when."""

    collection: str
    path: str
    sha256: str
    passages: int
    indexed_at: datetime


@dataclass(frozen=True, slots=True)
class CollectionStats:
    """What `gateway knowledge list` and the dashboard show of a collection."""

    name: str
    files: int
    passages: int
    embedded: int
    last_indexed: datetime | None


@dataclass(frozen=True, slots=True)
class Spent:
    """What model turns cost in a window: USD (from the price table) and tokens."""

    cost: float
    tokens: int


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """One run of a source's reconciliation: what it asked the provider, what it found
    missing from the store, and where the next run starts (`cursor`, from a successful run)."""

    id: int
    source: str
    period: str
    mode: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    since: datetime | None
    found: int
    missing: int
    stored: int
    redelivered: int
    cursor: str | None
    error: str | None

    @classmethod
    def from_row(cls, row: Any) -> Reconciliation:
        return cls(
            id=row.id,
            source=row.source,
            period=row.period,
            mode=row.mode,
            status=row.status,
            started_at=utc(row.started_at),  # type: ignore[arg-type]
            finished_at=utc(row.finished_at),
            since=utc(row.since),
            found=row.found,
            missing=row.missing,
            stored=row.stored,
            redelivered=row.redelivered,
            cursor=row.cursor,
            error=row.error,
        )


@dataclass(frozen=True, slots=True)
class EvalSummary:
    """One `gateway eval` as its list shows it: when, which candidate rules, the totals."""

    id: int
    created_at: datetime
    rules: str
    events: int
    changed: int
    cost_live: float
    cost_candidate: float
    latency_delta_ms: float
    expectations: int
    expectations_failed: int

    @property
    def pass_rate(self) -> float | None:
        return pass_rate(self.expectations, self.expectations_failed)


def pass_rate(checked: int, failed: int) -> float | None:
    """The share of checked expectations that held; None when none was checked."""
    return (checked - failed) / checked if checked else None


@dataclass(frozen=True, slots=True)
class StoredEval:
    """One `gateway eval` whole: its summary, the eval-store events it copied, its report."""

    summary: EvalSummary
    event_ids: list[int]
    report: dict[str, Any]
