"""The schedule store: what the scheduler knows of each rule, shared by every process.

`last_fire_at` only moves forward, so a late or duplicate writer cannot make a period due again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select

from gateway.store.part import Part
from gateway.store.records import ScheduleState, utc
from gateway.store.schema import schedules


class Schedules(Part):
    """`ScheduleStore` on the `schedules` table. Writes commit on their own, not in the
    journal: the scheduler writes a few rows a minute, never in bursts."""

    async def load(self, rules: list[str] | None = None) -> dict[str, ScheduleState]:
        query = select(schedules)
        if rules is not None:
            query = query.where(schedules.c.rule.in_(rules))
        return {row.rule: ScheduleState.from_row(row) for row in await self._rows(query)}

    async def last_fire(self, rule: str) -> datetime | None:
        query = select(schedules.c.last_fire_at).where(schedules.c.rule == rule)
        return utc(await self._scalar(query))

    async def record_next(self, rule: str, next_fire_at: datetime | None, now: datetime) -> None:
        values = {"next_fire_at": _utc(next_fire_at), "updated_at": _utc(now)}
        statement = self._insert(schedules).values(rule=rule, **values)
        await self._execute(statement.on_conflict_do_update(index_elements=["rule"], set_=values))

    async def record_fire(
        self,
        rule: str,
        *,
        fired_at: datetime,
        event_id: int,
        result: str,
        next_fire_at: datetime | None,
        now: datetime,
    ) -> None:
        values = {
            "last_fire_at": _utc(fired_at),
            "last_event_id": event_id,
            "last_result": result,
            "next_fire_at": _utc(next_fire_at),
            "updated_at": _utc(now),
        }
        statement = self._insert(schedules).values(rule=rule, **values)
        statement = statement.on_conflict_do_update(
            index_elements=["rule"],
            set_=values,
            where=or_(
                schedules.c.last_fire_at.is_(None),
                schedules.c.last_fire_at <= statement.excluded.last_fire_at,
            ),
        )
        await self._execute(statement)

    async def record_manual(self, rule: str, *, event_id: int, now: datetime) -> None:
        values = {"last_event_id": event_id, "last_result": "manual", "updated_at": _utc(now)}
        statement = self._insert(schedules).values(rule=rule, **values)
        await self._execute(statement.on_conflict_do_update(index_elements=["rule"], set_=values))

    async def _execute(self, statement: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(statement)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite keeps DateTime as naive text: only UTC values compare and read back correctly.
    return None if value is None else value.astimezone(UTC)
