"""The reconciler interface and its registry: one small class per provider that can say what
it sent, as `gateway.ingest.provider` has one per provider that sends.

A reconciler lists what the provider sent (or tried to) since a point in time and makes sure
each event is in the store: stored as received (`keep`), or asked of the provider again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import structlog

from gateway.config import SourceConfig
from gateway.ingest.endpoint import kept_headers
from gateway.ingest.provider import PROVIDERS, Provider
from gateway.metrics import Metrics
from gateway.reconcile_config import ReconcileSettings
from gateway.store import NewEvent, ReceivedVia, Store

log = structlog.get_logger("gateway.reconcile")

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Tally:
    """What a run found so far, kept up to date as it goes, so a run that fails part-way is
    recorded with what it did. `cursor` is the newest event time seen (ISO 8601)."""

    found: int = 0
    missing: int = 0
    stored: int = 0
    redelivered: int = 0
    cursor: str | None = None

    def saw(self, when: datetime) -> None:
        """Move the cursor to `when` if it is newer."""
        if self.cursor is None or when > datetime.fromisoformat(self.cursor):
            self.cursor = when.isoformat()

    def counts(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "missing": self.missing,
            "stored": self.stored,
            "redelivered": self.redelivered,
        }


class Reconciler:
    """Base of every reconciler: subclasses set `provider` (the provider's name it serves) and
    are registered by it; `run` does one pass."""

    provider: ClassVar[str]

    def __init__(
        self,
        name: str,
        source: SourceConfig,
        settings: ReconcileSettings,
        store: Store,
        *,
        metrics: Metrics | None = None,
        sleep: Sleep,
    ) -> None:
        self.name = name
        self.source = source
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.sleep = sleep
        # The ingest side of the same source: the same event types, ids and dedup keys.
        self.sender: Provider = PROVIDERS[source.provider](source)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "provider" in cls.__dict__:
            RECONCILERS[cls.provider] = cls

    async def run(self, since: datetime, tally: Tally) -> None:
        """Make sure every event the provider sent since `since` is stored (or asked again)."""
        raise NotImplementedError

    async def keep(self, headers: dict[str, str], body: bytes, payload: Any, now: datetime) -> bool:
        """Store an event as if the sender had delivered it now, marked `reconcile`; True if
        it was not stored before (a later real delivery of it is then a duplicate)."""
        new = NewEvent(
            source=self.name,
            provider=self.sender.name,
            type=self.sender.event_type(headers, payload),
            delivery_id=self.sender.delivery_id(headers, payload, body),
            headers=kept_headers(self.sender, headers),
            body=body,
            received_at=now,
            dedup_key=self.sender.dedup_key(headers, payload, body),
            received_via=ReceivedVia.RECONCILE,
        )
        stored = await self.store.events.add(new)
        if stored.duplicate:
            return False
        if self.metrics is not None:
            self.metrics.reconciled.labels(self.name).inc()
        log.info(
            "reconcile.stored",
            source=self.name,
            event_id=stored.id,
            delivery_id=new.delivery_id,
            type=new.type,
        )
        return True


# Provider name → its reconciler, filled as each module is imported (gateway.reconcile does).
RECONCILERS: dict[str, type[Reconciler]] = {}
