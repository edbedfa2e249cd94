"""The fetch store: thin events whose full object the worker fetches before routing them, their
tries, and the fetched object kept beside the body (`gateway.thin`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, update

from gateway.store.events import EVENTS
from gateway.store.fetch import Fetch
from gateway.store.part import Part, now_utc
from gateway.store.records import Event, utc
from gateway.store.schema import event_fetches, event_status, events
from gateway.store.status import EventStatus


class Fetches(Part):
    """`FetchStore` on `event_fetches`, the `fetched` column of `events` and `event_status`."""

    async def begin(self, event_ids: Sequence[int]) -> list[int]:
        """Take pending events out of routing to fetch their object first, due now; the ids
        that were still pending (another replica may have taken or routed the others)."""
        if not event_ids:
            return []
        now = now_utc()

        def change(conn: Connection) -> list[int]:
            taken = list(
                conn.execute(
                    update(event_status)
                    .where(event_status.c.event_id.in_(list(event_ids)))
                    .where(event_status.c.status == EventStatus.PENDING)
                    .values(status=EventStatus.FETCHING)
                    .returning(event_status.c.event_id)
                ).scalars()
            )
            if taken:
                insert = self._insert(event_fetches)
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=[event_fetches.c.event_id],
                        set_={"next_attempt_at": now},
                    ),
                    [{"event_id": i, "next_attempt_at": now} for i in taken],
                )
            return taken

        return await self.journal.apply(change)

    async def claim(self, limit: int, lease: float) -> list[tuple[Event, Fetch]]:
        """Take up to `limit` fetches that are due, for `lease` seconds (a worker that dies
        leaves them due again then), with their events."""
        now = now_utc()
        due = (
            select(event_fetches.c.event_id)
            .join(event_status, event_status.c.event_id == event_fetches.c.event_id)
            .where(event_status.c.status == EventStatus.FETCHING)
            .where(event_fetches.c.next_attempt_at <= now)
            .order_by(event_fetches.c.next_attempt_at)
            .limit(limit)
        )
        if self.dialect.skip_locked:
            # Replicas claiming together: each fetch goes to whoever locks it first.
            due = due.with_for_update(of=event_fetches, skip_locked=True)

        def change(conn: Connection) -> list[tuple[Event, Fetch]]:
            ids = list(conn.execute(due).scalars())
            if not ids:
                return []
            conn.execute(
                update(event_fetches)
                .where(event_fetches.c.event_id.in_(ids))
                .values(next_attempt_at=now + timedelta(seconds=lease))
            )
            rows = conn.execute(
                EVENTS.add_columns(*_FETCH_COLUMNS)
                .join(event_fetches, events.c.id == event_fetches.c.event_id)
                .where(events.c.id.in_(ids))
                .order_by(events.c.id)
            )
            return [(Event.from_row(row), Fetch.from_row(row)) for row in rows]

        return await self.journal.apply(change)

    async def fetched(self, event_id: int, obj: Any) -> bool:
        """Keep the fetched object beside the event's body and hand the event back to routing,
        in one commit; False if it was no longer fetching (someone else finished first)."""
        now = now_utc()

        def change(conn: Connection) -> bool:
            done = conn.execute(
                update(event_status)
                .where(
                    event_status.c.event_id == event_id,
                    event_status.c.status == EventStatus.FETCHING,
                )
                .values(status=EventStatus.PENDING)
            ).rowcount
            if done:
                conn.execute(update(events).where(events.c.id == event_id).values(fetched=obj))
                conn.execute(
                    update(event_fetches)
                    .where(event_fetches.c.event_id == event_id)
                    .values(
                        attempts=event_fetches.c.attempts + 1,
                        next_attempt_at=None,
                        error=None,
                        fetched_at=now,
                    )
                )
            return bool(done)

        return await self.journal.apply(change)

    async def retry_later(self, event_id: int, at: datetime, error: str) -> None:
        """A try failed in a way that may pass: count it, try again at `at` (unless another
        claimer, whose lease this one outlived, fetched it meanwhile)."""
        now = now_utc()
        await self.journal.apply(
            lambda conn: conn.execute(
                update(event_fetches)
                .where(event_fetches.c.event_id == event_id, event_fetches.c.fetched_at.is_(None))
                .values(
                    attempts=event_fetches.c.attempts + 1,
                    next_attempt_at=at,
                    error=error,
                    retry_since=func.coalesce(event_fetches.c.retry_since, now),
                )
            )
        )

    async def fail(self, event_id: int, error: str) -> None:
        """Give up (the retry horizon passed, or the API refused for good): the event is
        `fetch_failed` until an operator replays it."""

        def change(conn: Connection) -> None:
            conn.execute(
                update(event_status)
                .where(
                    event_status.c.event_id == event_id,
                    event_status.c.status == EventStatus.FETCHING,
                )
                .values(status=EventStatus.FETCH_FAILED)
            )
            conn.execute(
                update(event_fetches)
                .where(event_fetches.c.event_id == event_id, event_fetches.c.fetched_at.is_(None))
                .values(attempts=event_fetches.c.attempts + 1, next_attempt_at=None, error=error)
            )

        await self.journal.apply(change)

    async def restart(self, event_id: int) -> bool:
        """An operator's replay of a `fetch_failed` event: fetch it anew, now, with a fresh
        retry horizon; False if the event had not failed to fetch."""
        now = now_utc()

        def change(conn: Connection) -> bool:
            again = conn.execute(
                update(event_status)
                .where(
                    event_status.c.event_id == event_id,
                    event_status.c.status == EventStatus.FETCH_FAILED,
                )
                .values(status=EventStatus.FETCHING)
            ).rowcount
            if again:
                conn.execute(
                    update(event_fetches)
                    .where(event_fetches.c.event_id == event_id)
                    .values(next_attempt_at=now, retry_since=None)
                )
            return bool(again)

        return await self.journal.apply(change)

    async def get(self, event_id: int) -> Fetch | None:
        row = await self._first(select(event_fetches).where(event_fetches.c.event_id == event_id))
        return Fetch.from_row(row) if row else None

    async def next_due(self) -> datetime | None:
        """When the earliest fetch becomes due (for the worker's timer)."""
        query = (
            select(func.min(event_fetches.c.next_attempt_at))
            .join(event_status, event_status.c.event_id == event_fetches.c.event_id)
            .where(event_status.c.status == EventStatus.FETCHING)
        )
        return utc(await self._scalar(query))


_FETCH_COLUMNS = [
    event_fetches.c.event_id,
    event_fetches.c.attempts,
    event_fetches.c.next_attempt_at,
    event_fetches.c.retry_since,
    event_fetches.c.error,
    event_fetches.c.fetched_at,
]
