"""What every part of the store stands on: reads on the engine's pool, writes by the journal.

A part is one concept (events, runs, steps, ...) and holds its queries; `Store` composes them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Executable, Row, Table
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
        # Each dialect's module imported by its own stores alone: PostgreSQL's is 2 MB resident
        # in a gateway on SQLite (docs/benchmarks.md, memory).
        if self.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

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
