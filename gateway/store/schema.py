"""The store's tables, as SQLAlchemy Core metadata shared by SQLite and PostgreSQL.

Alembic migrations in `migrations/versions` create them; this module is what the code queries.
"""

from __future__ import annotations

from dataclasses import fields

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from gateway.errors import EventDoesNotFit
from gateway.store.records import NewEvent
from gateway.store.status import FINISHED, EventStatus, RunStatus

metadata = MetaData()

# A run not FINISHED, as SQL text exactly as migration 0003 wrote it into the partial index
# (the planners use a partial index only for a query that repeats its condition).
UNFINISHED = text("status NOT IN (" + ", ".join(f"'{status}'" for status in FINISHED) + ")")

# An event still holding its body, as migration 0008 wrote it into the partial index.
UNPRUNED = text("pruned_at IS NULL")

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid); PostgreSQL wants BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("provider", String(50), nullable=False),
    Column("type", String(200), nullable=False),
    # What decides a duplicate, from signed material only (see Provider.dedup_key).
    Column("dedup_key", String(300), nullable=False),
    # The sender's id for the delivery: a hint for people, possibly from an unsigned header.
    Column("delivery_id", String(300), nullable=False, server_default=""),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("headers", JSON, nullable=False),
    Column("body", LargeBinary, nullable=False),
    # How the door settled it: pending, or unmatched, or fetching (a thin event). Written once;
    # its status since then is `event_status`'s, which a trigger starts from this (0014).
    Column("received_status", String(20), nullable=False, server_default=EventStatus.PENDING.value),
    # When the retention job pruned the raw body and headers (the row stays for dedup).
    Column("pruned_at", DateTime(timezone=True), nullable=True),
    # A thin event's full object, fetched from the provider's API before routing (0013): kept
    # beside the body, which stays as it came.
    Column("fetched", JSON, nullable=True),
    # `webhook`: the sender delivered it; `reconcile`: found through the provider's API (0012).
    Column("received_via", String(20), nullable=False, server_default="webhook"),
    # Named in 0001, when the delivery id was the key; 0004 renamed the column under it
    # (SQLite renames a constraint only by rebuilding the table).
    UniqueConstraint("source", "dedup_key", name="uq_events_source_delivery"),
    Index("ix_events_received_at", "received_at"),
    Index("ix_events_source_delivery_id", "source", "delivery_id"),
    Index(
        "ix_events_unpruned",
        "received_at",
        sqlite_where=UNPRUNED,  # and on PostgreSQL: see `partial_on_postgresql`
    ),
)

# An event's status now: a row of its own, so that routing an event (its one change on the
# hot path) writes a few bytes, not the whole event. SQLite rewrites a whole record to change
# one column of it, reading and writing its 7 KB body's overflow pages: 70-120 us per event
# where this narrow row takes 11-30 (benchmarks.md, "The event's status in a row of its own").
# Triggers of migration 0014 insert the row with each event (from `received_status`, so every
# writer of events gets it, in the same statement) and the foreign key deletes it with the event.
event_status = Table(
    "event_status",
    metadata,
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(20), nullable=False),
    Index("ix_event_status_status_id", "status", "event_id"),
)

# The field of `NewEvent` that fills each column of `events`, where the names differ.
_FIELD_OF = {"received_status": "status"}
# The columns a new event fills, in the table's order: what the ingest writers insert.
NEW_EVENT_COLUMNS = tuple(
    column.name
    for column in events.columns
    if _FIELD_OF.get(column.name, column.name) in {f.name for f in fields(NewEvent)}
)
# The field of `NewEvent` each of those columns takes its value from.
NEW_EVENT_FIELDS = tuple(_FIELD_OF.get(name, name) for name in NEW_EVENT_COLUMNS)
# Those of text, with their lengths, read from the table: what `check_fits` holds each value to.
_TEXT = [
    (column.name, column.type.length)
    for column in (events.c[name] for name in NEW_EVENT_COLUMNS)
    if isinstance(column.type, String)
]


def check_fits(new: NewEvent) -> None:
    """Raise `EventDoesNotFit` unless every value of `new` fits its column of `events`.

    The same rules on both backends, though SQLite enforces none of them: PostgreSQL refuses
    a string over its length, a NUL character in text, and text that is not UTF-8, and it
    refuses it for the whole statement, which carries a batch of other requests' events.
    """
    for name, length in _TEXT:
        _check_text(name, getattr(new, _FIELD_OF.get(name, name)), length)
    for key, value in new.headers.items():
        _check_text(f"header {key[:40]!r}", key, None)
        _check_text(f"header {key[:40]!r}", value, None)


def _check_text(name: str, value: str, length: int | None) -> None:
    if length is not None and len(value) > length:
        raise EventDoesNotFit(
            f"{name} is {len(value)} characters long; the store keeps at most {length}"
        )
    if "\x00" in value:
        raise EventDoesNotFit(f"{name} contains a NUL character, which the store cannot keep")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise EventDoesNotFit(f"{name} is not valid Unicode text") from None


# The fetches of thin events under way or done (0013): one row per event that needed one.
event_fetches = Table(
    "event_fetches",
    metadata,
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # When the next try is due; while a worker fetches, the end of its lease on the fetch.
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    # When the current series of failures began: the retry horizon counts from it.
    Column("retry_since", DateTime(timezone=True), nullable=True),
    Column("error", Text, nullable=True),
    Column("fetched_at", DateTime(timezone=True), nullable=True),
    Index("ix_event_fetches_due", "next_attempt_at"),
)


# One run per matched rule per event (or per scheduled firing): the unit of work of the worker.
runs = Table(
    "runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, ForeignKey("events.id"), nullable=False),
    Column("rule", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("mode", String(20), nullable=False, server_default="live"),
    # pending → running → succeeded | failed | dead; pending again to retry after a backoff.
    Column("status", String(20), nullable=False, server_default=RunStatus.PENDING.value),
    Column("ordering_key", String(300), nullable=True),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("error", Text, nullable=True),
    # When the current series of failures began (the retry horizon counts from it); reset by
    # an operator's retry.
    Column("retry_since", DateTime(timezone=True), nullable=True),
    # Assistant runs: the conversation they continue, and what the model cost.
    Column("thread_key", String(300), nullable=True),
    Column("input_tokens", Integer, nullable=False, server_default="0"),
    Column("output_tokens", Integer, nullable=False, server_default="0"),
    Column("cost", Float, nullable=False, server_default="0"),
    Index("ix_runs_status_id", "status", "id"),
    # Unfinished runs by key: "is this the first unfinished run of its key?" when claiming.
    Index(
        "ix_runs_unfinished_key",
        "ordering_key",
        "id",
        sqlite_where=UNFINISHED,  # and on PostgreSQL: see `partial_on_postgresql`
    ),
    Index("ix_runs_event_id", "event_id"),
    Index("ix_runs_created_at", "created_at"),
)

# Every tool call (and, for assistants, every model turn) of a run, recorded before it happens.
steps = Table(
    "steps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", Id, ForeignKey("runs.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("tool", String(200), nullable=True),
    Column("arguments", JSON, nullable=True),
    Column("idempotency_key", String(200), nullable=False),
    # started (outcome unknown until it ends) → succeeded | failed | skipped
    Column("status", String(30), nullable=False),
    Column("result", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("duration_ms", Float, nullable=True),
    # Model turns: which model, what it cost. Tool calls proposed by a model: its call id.
    Column("model", String(200), nullable=True),
    Column("call_id", String(200), nullable=True),
    Column("input_tokens", Integer, nullable=False, server_default="0"),
    Column("output_tokens", Integer, nullable=False, server_default="0"),
    Column("cost", Float, nullable=False, server_default="0"),
    # Approval of a step in `awaiting_approval`: approved | rejected, by whom, why.
    Column("decision", String(20), nullable=True),
    Column("decided_by", String(200), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("reason", Text, nullable=True),
    # What an approval binds to (records.call_digest): the call as proposed for approval, and
    # the call an approval was given for.
    Column("arguments_digest", String(64), nullable=True),
    Column("approved_digest", String(64), nullable=True),
    UniqueConstraint("run_id", "position", name="uq_steps_run_position"),
    UniqueConstraint("idempotency_key", name="uq_steps_idempotency_key"),
    Index("ix_steps_status", "status"),
    # Budgets sum today's model turns (gateway.store.spending).
    Index("ix_steps_kind_started_at", "kind", "started_at"),
)

# Conversation memory of assistants, by rendered thread key: one row per item, in order.
thread_items = Table(
    "thread_items",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("thread_key", String(300), nullable=False),
    Column("run_id", Id, ForeignKey("runs.id"), nullable=True),
    # A Responses API input item (message, function_call, function_call_output) as JSON.
    Column("item", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_thread_items_key_id", "thread_key", "id"),
)

# What the scheduler knows of each scheduled rule, for `gateway schedules`, the API and the UI.
schedules = Table(
    "schedules",
    metadata,
    Column("rule", String(200), primary_key=True),
    Column("last_fire_at", DateTime(timezone=True), nullable=True),
    Column("last_event_id", Id, nullable=True),
    Column("last_result", String(30), nullable=True),
    Column("next_fire_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# One row per reconciliation run of a source (gateway.reconcile): unique per period, so replicas
# firing the same period make one run; the last successful run's cursor starts the next one.
reconciliations = Table(
    "reconciliations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("period", String(100), nullable=False),
    Column("mode", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("since", DateTime(timezone=True), nullable=True),
    Column("found", Integer, nullable=False, server_default="0"),
    Column("missing", Integer, nullable=False, server_default="0"),
    Column("stored", Integer, nullable=False, server_default="0"),
    Column("redelivered", Integer, nullable=False, server_default="0"),
    Column("cursor", String(300), nullable=True),
    Column("error", Text, nullable=True),
    UniqueConstraint("source", "period", name="uq_reconciliations_source_period"),
    Index("ix_reconciliations_source_started_at", "source", "started_at"),
)

# Dashboard sessions ended by logout before their cookie expires: a cookie whose nonce is here
# is refused by every replica. A row is useless once `expires_at` passes (the cookie's own
# expiry refuses it), so logouts delete those.
session_revocations = Table(
    "session_revocations",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_session_revocations_expires_at", "expires_at"),
)

# Knowledge collections (gateway.knowledge): each indexed file once per collection, with the
# SHA-256 of its content, so re-indexing skips what did not change.
knowledge_files = Table(
    "knowledge_files",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("collection", String(100), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("passages", Integer, nullable=False),
    Column("indexed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("collection", "path", name="uq_knowledge_files_collection_path"),
)

# The passages a file was split into. Lexical search: an FTS5 table over them on SQLite, a
# generated `tsv` column on PostgreSQL (both made by migration 0007, queried in
# knowledge_sqlite / knowledge_postgresql). `embedding`: float32 values, little-endian.
knowledge_passages = Table(
    "knowledge_passages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("file_id", Id, ForeignKey("knowledge_files.id"), nullable=False),
    Column("collection", String(100), nullable=False),
    Column("position", Integer, nullable=False),
    Column("heading", Text, nullable=False),
    Column("line_start", Integer, nullable=False),
    Column("line_end", Integer, nullable=False),
    Column("page", Integer, nullable=True),
    Column("text", Text, nullable=False),
    Column("embedding", LargeBinary, nullable=True),
    Index("ix_knowledge_passages_file_id", "file_id"),
    Index("ix_knowledge_passages_collection", "collection"),
)

# `gateway eval` runs, kept in the eval store (never the gateway's own): each with its totals
# for the list, the ids of the events it copied in (deleted with it), and its whole report.
evals = Table(
    "evals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("rules", String(1000), nullable=False),
    Column("events", Integer, nullable=False),
    Column("changed", Integer, nullable=False),
    Column("cost_live", Float, nullable=False),
    Column("cost_candidate", Float, nullable=False),
    Column("latency_delta_ms", Float, nullable=False),
    Column("expectations", Integer, nullable=False),
    Column("expectations_failed", Integer, nullable=False),
    Column("event_ids", JSON, nullable=False),
    Column("report", JSON, nullable=False),
)

# The last tool list of each MCP server an eval listed, kept in the eval store so that an
# `--offline` eval knows the servers' tools (names, schemas, read-only hints) without asking.
mcp_listings = Table(
    "mcp_listings",
    metadata,
    Column("server", String(100), primary_key=True),
    Column("tools", JSON, nullable=False),
    Column("listed_at", DateTime(timezone=True), nullable=False),
)


def partial_on_postgresql() -> None:
    """Give the partial indexes their WHERE on PostgreSQL too, as the migrations make them.

    The tables name SQLite's alone: naming PostgreSQL's imports its dialect (2 MB resident) in
    every gateway, SQLite's included. Nothing at run time emits DDL from these tables (the
    migrations do); Alembic's environment calls this so its comparisons see both.
    """
    for table in metadata.tables.values():
        for index in table.indexes:
            where = index.dialect_options["sqlite"]["where"]
            if where is not None:
                index.dialect_options["postgresql"]["where"] = where
