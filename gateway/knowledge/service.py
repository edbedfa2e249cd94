"""Keeping the collections indexed while the gateway runs: once at start, then every
`reindex_every` seconds for a collection that sets it. Failures are logged, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from gateway.knowledge.library import Library
from gateway.knowledge.settings import Collection
from gateway.store.abc import KnowledgeStore

log = structlog.get_logger("gateway.knowledge")


class Indexing:
    """The background task that indexes `collections` into `store`, and syncs hosted ones
    with their vector stores."""

    def __init__(
        self,
        collections: Mapping[str, Collection],
        models: Mapping[str, Mapping[str, Any]],
        base_dir: Path,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.library = Library(collections, models=models, base_dir=base_dir)
        self._task: asyncio.Task[None] | None = None
        self._sleep = sleep
        self._clock = clock

    def start(self, store: KnowledgeStore) -> None:
        if self.library.collections:
            self._task = asyncio.create_task(self._run(store), name="knowledge-indexing")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.library.aclose()

    async def _run(self, store: KnowledgeStore) -> None:
        due = dict.fromkeys(self.library.collections, 0.0)
        while due:
            for name in sorted(due, key=due.__getitem__):
                if due[name] > self._clock():
                    continue
                try:
                    await self.library.index(name, store)
                except Exception as exc:  # a bad file or a down embeddings server
                    log.warning("knowledge indexing failed", collection=name, error=str(exc))
                every = self.library.collections[name].reindex_every
                if every is None:
                    del due[name]
                else:
                    due[name] = self._clock() + every
            if due:
                await self._sleep(max(0.0, min(due.values()) - self._clock()))
