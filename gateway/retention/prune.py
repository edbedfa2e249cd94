"""The pruning job: history past its retention archived (optionally), then deleted in bounded
batches; on SQLite the freed pages are given back to the file system.

`Pruner.prune(now)` is one whole pass, clock injected; `start()` runs it every `every`, and
only one replica prunes at a time (`store.retention.exclusive()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog

from gateway.retention.archive import Archive
from gateway.retention_config import RetentionConfig
from gateway.store import Store

log = structlog.get_logger(__name__)

# Free pages given back per SQLite commit (4 KiB each: 512 KiB), so no commit holds the lock long.
VACUUM_PAGES = 128


@dataclass
class Pruned:
    """What one pass removed (and archived first)."""

    bodies: int = 0
    runs: int = 0
    event_rows: int = 0
    threads: int = 0
    pages: int = 0
    archived: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Pruner:
    def __init__(
        self,
        store: Store,
        config: RetentionConfig,
        *,
        archive: Archive | None = None,
        on_pruned: Callable[[Pruned], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.archive = archive
        self.on_pruned = on_pruned
        self._task: asyncio.Task[None] | None = None

    async def prune(self, now: datetime | None = None) -> Pruned | None:
        """One pass; None if another replica is pruning now."""
        now = (now or utcnow()).astimezone(UTC)
        async with self.store.retention.exclusive() as mine:
            if not mine:
                log.info("retention.skipped", reason="another replica is pruning")
                return None
            pruned = Pruned()
            await self._bodies(now, pruned)
            await self._runs(now, pruned)
            rows_after = max(self.config.runs, self.config.dedup_keys)
            pruned.event_rows = await self._drain(
                lambda: self.store.retention.prune_event_rows(now - rows_after, self.config.batch)
            )
            pruned.threads = await self._drain(
                lambda: self.store.retention.prune_threads(now - self.config.threads, 50)
            )
            pruned.pages = await self._drain(lambda: self.store.retention.vacuum(VACUUM_PAGES))
        log.info("retention.pruned", **pruned.as_dict())
        if self.on_pruned is not None:
            self.on_pruned(pruned)
        return pruned

    async def _bodies(self, now: datetime, pruned: Pruned) -> None:
        scopes: list[tuple[timedelta, str | None, list[str]]] = [
            (o.bodies, name, []) for name, o in self.config.sources.items()
        ]
        scopes.append((self.config.bodies, None, list(self.config.sources)))
        for keep, source, other_than in scopes:
            if self.archive is None:  # nothing to keep: select and prune in one commit
                batch = partial(
                    self.store.retention.prune_bodies_before,
                    now - keep,
                    self.config.batch,
                    source=source,
                    other_than=other_than,
                )
                pruned.bodies += await self._drain(batch)
                continue
            while True:
                began = time.monotonic()
                rows = await self.store.retention.events_to_prune(
                    now - keep, self.config.batch, source=source, other_than=other_than
                )
                if not rows:
                    break
                await self.archive.write("events", rows)
                pruned.archived += len(rows)
                pruned.bodies += await self.store.retention.prune_bodies([r["id"] for r in rows])
                await self._rest(began)

    async def _runs(self, now: datetime, pruned: Pruned) -> None:
        scopes: list[tuple[timedelta, str | None, list[str]]] = [
            (o.runs, name, []) for name, o in self.config.rules.items()
        ]
        scopes.append((self.config.runs, None, list(self.config.rules)))
        for keep, rule, other_than in scopes:
            if self.archive is None:
                batch = partial(
                    self.store.retention.prune_runs_before,
                    now - keep,
                    self.config.batch,
                    rule=rule,
                    other_than=other_than,
                )
                pruned.runs += await self._drain(batch)
                continue
            while True:
                began = time.monotonic()
                found = await self.store.retention.runs_to_prune(
                    now - keep, self.config.batch, rule=rule, other_than=other_than
                )
                if not found:
                    break
                records = [{"run": run, "steps": steps} for run, steps in found]
                await self.archive.write("runs", records)
                pruned.archived += len(records)
                pruned.runs += await self.store.retention.prune_runs([r["id"] for r, _ in found])
                await self._rest(began)

    async def _drain(self, batch: Callable[[], Awaitable[int]]) -> int:
        total = 0
        began = time.monotonic()
        while done := await batch():
            total += done
            await self._rest(began)
            began = time.monotonic()
        return total

    async def _rest(self, began: float) -> None:
        took = time.monotonic() - began
        await asyncio.sleep(max(self.config.pause, took * self.config.rest))

    def start(self) -> None:
        self._task = asyncio.create_task(self._every(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _every(self) -> None:
        # The first pass one period after start: a restart loop does not prune in a loop.
        while True:
            await asyncio.sleep(self.config.every.total_seconds())
            try:
                await self.prune()
            except Exception as exc:  # the next pass tries again; the store may be back
                log.error("retention.failed", error=str(exc))
