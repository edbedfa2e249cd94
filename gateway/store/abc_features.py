"""Interfaces of the store's parts that each serve one feature: retention, knowledge, stats,
the fetches of thin events.
reconciliation.

`gateway.store.abc` holds the core parts (events, runs, steps, threads, schedules, sessions)
and re-exports these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from gateway.store.fetch import Fetch
from gateway.store.records import (
    CollectionStats,
    EvalSummary,
    Event,
    KnowledgeFile,
    NewPassage,
    Passage,
    Reconciliation,
    StoredEval,
)
from gateway.store.status import ReconcileStatus, RunStatus


class RetentionStore(Protocol):
    """Old history, found, archived as plain rows, pruned in bounded batches, restored.

    Nothing unfinished is ever selected: pending events, events with a pending, running,
    dead or awaiting-approval run, and such runs themselves, stay.
    """

    async def events_to_prune(
        self,
        before: datetime,
        limit: int,
        *,
        source: str | None = None,
        other_than: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Up to `limit` routed events received before `before` that still hold a body,
        oldest first (of `source` only, or of none of `other_than`), as JSON-ready rows: bytes
        in base64, times in ISO 8601, as an archive keeps them and `restore` takes them."""
        ...

    async def prune_bodies(self, ids: Sequence[int]) -> int:
        """Empty these events' body and headers; their rows (and dedup keys) stay."""
        ...

    async def runs_to_prune(
        self,
        before: datetime,
        limit: int,
        *,
        rule: str | None = None,
        other_than: Sequence[str] = (),
    ) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Up to `limit` finished runs (not dead) created before `before`, each with its steps."""
        ...

    async def prune_runs(self, ids: Sequence[int]) -> int: ...

    async def prune_bodies_before(
        self,
        before: datetime,
        limit: int,
        *,
        source: str | None = None,
        other_than: Sequence[str] = (),
    ) -> int:
        """`events_to_prune` then `prune_bodies` in one commit, the rows never read out (when
        nothing is archived); how many were pruned."""
        ...

    async def prune_runs_before(
        self,
        before: datetime,
        limit: int,
        *,
        rule: str | None = None,
        other_than: Sequence[str] = (),
    ) -> int:
        """`runs_to_prune` then `prune_runs` in one commit, nothing read out."""
        ...

    async def prune_event_rows(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` rows of pruned events received before `before` with no run."""
        ...

    async def prune_threads(self, before: datetime, limit: int) -> int: ...

    async def restore(self, table: str, rows: Sequence[dict[str, Any]]) -> int:
        """Bring archived rows of `events`, `runs` or `steps` back; how many changed."""
        ...

    async def vacuum(self, pages: int) -> int:
        """Return up to `pages` free pages to the file system (SQLite); pages returned."""
        ...

    async def compact(self) -> None:
        """Rewrite a SQLite file whole so later vacuums give pages back (needs it alone)."""
        ...

    async def size(self) -> int:
        """Bytes the database takes."""
        ...

    def exclusive(self) -> AbstractAsyncContextManager[bool]:
        """Enter to learn whether this process may prune now (one across replicas)."""
        ...


class KnowledgeStore(Protocol):
    """Knowledge collections: files by content hash, their passages, lexical and vector search."""

    async def files(self, collection: str) -> list[KnowledgeFile]: ...

    async def replace_file(
        self, collection: str, path: str, sha256: str, passages: Sequence[NewPassage]
    ) -> None:
        """Store `path`'s passages in place of any it had, in one transaction."""
        ...

    async def remove_files(self, collection: str, paths: Iterable[str]) -> int:
        """Remove files and their passages; how many files were removed."""
        ...

    async def drop(self, collection: str) -> int:
        """Remove a whole collection; how many files it had."""
        ...

    async def collections(self) -> list[CollectionStats]: ...

    async def lexical(self, collection: str, query: str, limit: int) -> list[tuple[Passage, float]]:
        """Passages best first with their score (higher is better): SQLite FTS5's BM25, or
        PostgreSQL's full-text rank. Any text is a valid query (its words are searched)."""
        ...

    async def version(self, collection: str) -> tuple[int, datetime | None]:
        """What changes whenever the collection's passages do: its file count and last index
        time (a cache of its vectors is kept while this stays the same)."""
        ...

    async def vector_note(self) -> str:
        """How this store compares vectors, and why not with a database extension."""
        ...

    async def vectors(self, collection: str) -> list[tuple[int, bytes]]:
        """Every embedded passage of the collection: its id and its vector."""
        ...

    async def passages(self, ids: Sequence[int]) -> list[Passage]:
        """The passages with these ids, in the order given (unknown ids left out)."""
        ...


class StatsStore(Protocol):
    """Counts for the dashboard's overview, grouped in the database; read only."""

    async def events_by_source(
        self, since: datetime, bucket_seconds: int
    ) -> list[tuple[datetime, str, int]]:
        """Events received since `since`: (bucket start, source, count), oldest first."""
        ...

    async def runs_by_status(self, since: datetime) -> dict[RunStatus, int]:
        """Runs created since `since`, counted by status."""
        ...

    async def usage_by_rule_day(
        self, since: datetime
    ) -> list[tuple[datetime, str, int, int, float]]:
        """Assistant runs created since `since`: (UTC day, rule, input tokens, output tokens,
        cost), oldest day first."""
        ...

    async def action_latencies(self, since: datetime) -> list[float]:
        """Seconds from an event's arrival to its run's first tool call, recent runs first."""
        ...


class FetchStore(Protocol):
    """Thin events whose full object is fetched before routing (`gateway.thin`): taken out of
    routing as `fetching`, claimed under a lease, retried, and handed back to routing as
    `pending` with the object kept beside the body (`Event.fetched`), or `fetch_failed`."""

    async def begin(self, event_ids: Sequence[int]) -> list[int]:
        """Pending events to fetch first, due now; the ids that were still pending."""
        ...

    async def claim(self, limit: int, lease: float) -> list[tuple[Event, Fetch]]:
        """Up to `limit` due fetches, each the caller's for `lease` seconds."""
        ...

    async def fetched(self, event_id: int, obj: Any) -> bool:
        """Keep `obj` beside the body and make the event pending, in one commit; False if it
        was no longer fetching."""
        ...

    async def retry_later(self, event_id: int, at: datetime, error: str) -> None: ...

    async def fail(self, event_id: int, error: str) -> None:
        """The event is `fetch_failed`, with `error`, until an operator replays it."""
        ...

    async def restart(self, event_id: int) -> bool:
        """Fetch a `fetch_failed` event anew, now; False if it had not failed to fetch."""
        ...

    async def get(self, event_id: int) -> Fetch | None: ...

    async def next_due(self) -> datetime | None: ...


class ReconcileStore(Protocol):
    """Reconciliation runs per source (gateway.reconcile), one per period across replicas."""

    async def begin(
        self, source: str, period: str, mode: str, since: datetime | None, now: datetime
    ) -> int | None:
        """Start the run of `(source, period)`: its id, or None if the period has one already.
        Runs of `source` still marked running (their process died) become interrupted."""
        ...

    async def finish(
        self, run_id: int, status: ReconcileStatus, now: datetime, **counts: Any
    ) -> None:
        """End a run with its status and `found`, `missing`, `stored`, `redelivered`,
        `cursor`, `error`."""
        ...

    async def last_success(self, source: str) -> Reconciliation | None:
        """The newest succeeded run of `source`: its cursor is where the next run starts."""
        ...

    async def recent(self, source: str | None = None, limit: int = 20) -> list[Reconciliation]:
        """Newest first."""
        ...

    async def stored_delivery_ids(self, source: str, delivery_ids: Iterable[str]) -> set[str]:
        """Which of `delivery_ids` an event of `source` was stored with."""
        ...


class EvalStore(Protocol):
    """`gateway eval` runs, in the eval store: kept with their report, listed, deleted."""

    async def add(self, summary: EvalSummary, event_ids: Sequence[int], report: Any) -> int:
        """Keep an eval (`summary.id` is ignored); its new id."""
        ...

    async def latest(self, limit: int) -> list[EvalSummary]:
        """The newest `limit` evals, newest first."""
        ...

    async def get(self, eval_id: int) -> StoredEval | None: ...

    async def delete(self, eval_id: int) -> bool:
        """Forget an eval and everything it copied in (its events, their runs and steps);
        False if there was no such eval."""
        ...

    async def keep_listing(self, server: str, tools: dict[str, Any]) -> None:
        """Keep an MCP server's tool list (tool name → its JSON), in place of the last."""
        ...

    async def listing(self, server: str) -> dict[str, Any] | None:
        """The MCP server's kept tool list, or None if none was kept."""
        ...
