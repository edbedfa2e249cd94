"""What every part of the store stands on: reads on the engine's pool, writes by the journal.

A part is one concept (events, runs, steps, ...) and holds its queries; `Store` composes them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Executable, Row, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.batching import Journal
from gateway.store.database import Dialect


def now_utc() -> datetime:
    return datetime.now(UTC)


class Part:
    """A part of the store. Reads use `engine`; writes to work go through `journal`."""

    def __init__(self, engine: AsyncEngine, journal: Journal, dialect: Dialect) -> None:
        self.engine = engine
        self.journal = journal
        self.dialect = dialect

    def _insert(self, table: Table) -> Any:
        """The dialect's INSERT into `table`: the one that has ON CONFLICT."""
        insert = postgresql.insert if self.dialect.name == "postgresql" else sqlite.insert
        return insert(table)

    async def _rows(
        self, query: Executable, parameters: dict[str, Any] | None = None
    ) -> list[Row[Any]]:
        async with self.engine.connect() as conn:
            return list(await conn.execute(query, parameters))

    async def _first(self, query: Executable) -> Row[Any] | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first()

    async def _scalar(self, query: Executable) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()
