"""The `schedules` table: what the scheduler knows of each rule, shared by every process.

`last_fire_at` only moves forward, so a late or duplicate writer cannot make a period due again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite

from gateway.store import Store
from gateway.store.records import utc
from gateway.store.schema import schedules


@dataclass(frozen=True, slots=True)
class ScheduleState:
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


async def load(store: Store, rules: list[str] | None = None) -> dict[str, ScheduleState]:
    query = select(schedules)
    if rules is not None:
        query = query.where(schedules.c.rule.in_(rules))
    async with store.engine.connect() as conn:
        return {row.rule: ScheduleState.from_row(row) for row in await conn.execute(query)}


async def last_fire(store: Store, rule: str) -> datetime | None:
    query = select(schedules.c.last_fire_at).where(schedules.c.rule == rule)
    async with store.engine.connect() as conn:
        return utc((await conn.execute(query)).scalar_one_or_none())


async def record_next(
    store: Store, rule: str, next_fire_at: datetime | None, now: datetime
) -> None:
    """Note the next fire time (at start-up), creating the row if the rule is new."""
    values = {"next_fire_at": _utc(next_fire_at), "updated_at": _utc(now)}
    statement = _insert(store).values(rule=rule, **values)
    await _execute(store, statement.on_conflict_do_update(index_elements=["rule"], set_=values))


async def record_fire(
    store: Store,
    rule: str,
    *,
    fired_at: datetime,
    event_id: int,
    result: str,
    next_fire_at: datetime | None,
    now: datetime,
) -> None:
    """Note a scheduled firing, unless the row already holds a later one."""
    values = {
        "last_fire_at": _utc(fired_at),
        "last_event_id": event_id,
        "last_result": result,
        "next_fire_at": _utc(next_fire_at),
        "updated_at": _utc(now),
    }
    statement = _insert(store).values(rule=rule, **values)
    statement = statement.on_conflict_do_update(
        index_elements=["rule"],
        set_=values,
        where=or_(
            schedules.c.last_fire_at.is_(None),
            schedules.c.last_fire_at <= statement.excluded.last_fire_at,
        ),
    )
    await _execute(store, statement)


async def record_manual(store: Store, rule: str, *, event_id: int, now: datetime) -> None:
    """Note a manual firing: it is the last event, but no scheduled period was fired."""
    values = {"last_event_id": event_id, "last_result": "manual", "updated_at": _utc(now)}
    statement = _insert(store).values(rule=rule, **values)
    await _execute(store, statement.on_conflict_do_update(index_elements=["rule"], set_=values))


def _insert(store: Store) -> Any:
    insert = postgresql.insert if store.dialect.name == "postgresql" else sqlite.insert
    return insert(schedules)


async def _execute(store: Store, statement: Any) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(statement)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite keeps DateTime as naive text: only UTC values compare and read back correctly.
    return None if value is None else value.astimezone(UTC)
