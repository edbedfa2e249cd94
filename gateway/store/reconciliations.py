"""The reconciliation store: one row per run of a source's reconciliation, and the question
reconciliation asks of the events (which of these delivery ids are stored?)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from gateway.store.part import Part
from gateway.store.records import Reconciliation
from gateway.store.schema import events, reconciliations
from gateway.store.status import ReconcileStatus

# Delivery ids asked about in one query: well under SQLite's and asyncpg's parameter limits.
_LOOKUP_CHUNK = 500


class Reconciliations(Part):
    """`ReconcileStore` on the `reconciliations` table. Writes commit on their own: a run
    writes two rows' worth, never in bursts."""

    async def begin(
        self, source: str, period: str, mode: str, since: datetime | None, now: datetime
    ) -> int | None:
        """Start a run for `(source, period)`: its id, or None if that period has one already
        (another replica fired it). Runs of `source` left running are marked interrupted."""
        statement = (
            self._insert(reconciliations)
            .values(
                source=source,
                period=period,
                mode=mode,
                status=ReconcileStatus.RUNNING,
                started_at=_utc(now),
                since=_utc(since) if since else None,
            )
            .on_conflict_do_nothing(index_elements=["source", "period"])
            .returning(reconciliations.c.id)
        )
        async with self.engine.begin() as conn:
            run_id: int | None = (await conn.execute(statement)).scalar_one_or_none()
            if run_id is not None:
                # Only a run that begins says the earlier ones died: a replica finding its
                # period taken leaves the run that took it alone.
                await conn.execute(
                    update(reconciliations)
                    .where(
                        reconciliations.c.source == source,
                        reconciliations.c.status == ReconcileStatus.RUNNING,
                        reconciliations.c.id != run_id,
                    )
                    .values(status=ReconcileStatus.INTERRUPTED, finished_at=_utc(now))
                )
            return run_id

    async def finish(
        self, run_id: int, status: ReconcileStatus, now: datetime, **counts: Any
    ) -> None:
        """End a run: its status, counts (found, missing, stored, redelivered), cursor, error."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(reconciliations)
                .where(reconciliations.c.id == run_id)
                .values(status=status, finished_at=_utc(now), **counts)
            )

    async def last_success(self, source: str) -> Reconciliation | None:
        query = (
            select(reconciliations)
            .where(
                reconciliations.c.source == source,
                reconciliations.c.status == ReconcileStatus.SUCCEEDED,
            )
            .order_by(reconciliations.c.id.desc())
            .limit(1)
        )
        row = await self._first(query)
        return Reconciliation.from_row(row) if row else None

    async def recent(self, source: str | None = None, limit: int = 20) -> list[Reconciliation]:
        query = select(reconciliations).order_by(reconciliations.c.id.desc()).limit(limit)
        if source is not None:
            query = query.where(reconciliations.c.source == source)
        return [Reconciliation.from_row(row) for row in await self._rows(query)]

    async def stored_delivery_ids(self, source: str, delivery_ids: Iterable[str]) -> set[str]:
        wanted = sorted(set(delivery_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            query = select(events.c.delivery_id).where(
                events.c.source == source, events.c.delivery_id.in_(chunk)
            )
            found |= {row.delivery_id for row in await self._rows(query)}
        return found


def _utc(value: datetime) -> datetime:
    # SQLite keeps DateTime as naive text: only UTC values compare and read back correctly.
    return value.astimezone(UTC)
