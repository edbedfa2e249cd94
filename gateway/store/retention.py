"""The retention part of the store: finding old history (as plain, JSON-ready rows to archive),
pruning it in bounded batches, restoring archived rows, and the store's size.

Every write is one batch in one journal commit, so ingest and the worker get the writer
between batches; nothing unfinished (pending, dead, awaiting approval) is ever selected.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    LargeBinary,
    Select,
    Table,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    update,
)

from gateway.store.events import EVENTS
from gateway.store.part import Part, now_utc
from gateway.store.schema import event_status, events, runs, steps, thread_items
from gateway.store.status import UNROUTED, RunStatus

# Runs that are over and handled: these age out. Dead runs wait for an operator's retry.
PRUNABLE = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
# The PostgreSQL advisory lock key held by the one replica pruning (any constant).
PRUNE_LOCK = 0x6761746577617932
TABLES = {"events": events, "runs": runs, "steps": steps}
# What an archived row of each table holds: its columns, and an event's status with it.
ARCHIVED: dict[str, list[Column[Any]]] = {
    name: [*table.columns, *([event_status.c.status] if table is events else [])]
    for name, table in TABLES.items()
}
Row = dict[str, Any]


class Retention(Part):
    """`RetentionStore` on the events, runs, steps and thread_items tables."""

    async def events_to_prune(
        self,
        before: datetime,
        limit: int,
        *,
        source: str | None = None,
        other_than: Sequence[str] = (),
    ) -> list[Row]:
        query = _old_events(EVENTS, before, limit, source, other_than)
        return [plain("events", row._mapping) for row in await self._rows(query)]

    async def prune_bodies_before(
        self,
        before: datetime,
        limit: int,
        *,
        source: str | None = None,
        other_than: Sequence[str] = (),
    ) -> int:
        chosen = _old_events(
            select(events.c.id).join_from(events, event_status), before, limit, source, other_than
        )

        def change(conn: Connection) -> int:
            return _strip(conn, list(conn.execute(chosen).scalars()))

        return await self.journal.apply(change)

    async def prune_bodies(self, ids: Sequence[int]) -> int:
        return await self.journal.apply(lambda conn: _strip(conn, list(ids)))

    async def runs_to_prune(
        self,
        before: datetime,
        limit: int,
        *,
        rule: str | None = None,
        other_than: Sequence[str] = (),
    ) -> list[tuple[Row, list[Row]]]:
        query = _old_runs(select(runs), before, limit, rule, other_than)
        found = [plain("runs", row._mapping) for row in await self._rows(query)]
        if not found:
            return []
        ids = [run["id"] for run in found]
        of: dict[int, list[Row]] = {i: [] for i in ids}
        journal = select(steps).where(steps.c.run_id.in_(ids)).order_by(steps.c.id)
        for row in await self._rows(journal):
            of[row.run_id].append(plain("steps", row._mapping))
        return [(run, of[run["id"]]) for run in found]

    async def prune_runs(self, ids: Sequence[int]) -> int:
        """Delete runs and their steps; their conversation items stay in their thread (which
        ages out by last use), no longer pointing at the run."""
        return await self.journal.apply(lambda conn: _delete_runs(conn, list(ids)))

    async def prune_runs_before(
        self,
        before: datetime,
        limit: int,
        *,
        rule: str | None = None,
        other_than: Sequence[str] = (),
    ) -> int:
        chosen = _old_runs(select(runs.c.id), before, limit, rule, other_than)

        def change(conn: Connection) -> int:
            return _delete_runs(conn, list(conn.execute(chosen).scalars()))

        return await self.journal.apply(change)

    async def prune_event_rows(self, before: datetime, limit: int) -> int:
        """Delete rows of events pruned already, received before `before`, with no run left."""
        any_run = exists().where(runs.c.event_id == events.c.id)
        chosen = (
            select(events.c.id)
            .where(
                events.c.pruned_at.is_not(None),
                events.c.received_at < before.astimezone(UTC),
                ~any_run,
            )
            .order_by(events.c.received_at)
            .limit(limit)
        )

        def change(conn: Connection) -> int:
            ids = list(conn.execute(chosen).scalars())
            if not ids:
                return 0
            return int(conn.execute(delete(events).where(events.c.id.in_(ids))).rowcount)

        return await self.journal.apply(change)

    async def prune_threads(self, before: datetime, limit: int) -> int:
        """Forget conversations last used before `before`: up to `limit` threads' items."""
        idle = (
            select(thread_items.c.thread_key)
            .group_by(thread_items.c.thread_key)
            .having(func.max(thread_items.c.created_at) < before.astimezone(UTC))
            .limit(limit)
        )

        def change(conn: Connection) -> int:
            keys = list(conn.execute(idle).scalars())
            if not keys:
                return 0
            gone = delete(thread_items).where(thread_items.c.thread_key.in_(keys))
            return int(conn.execute(gone).rowcount)

        return await self.journal.apply(change)

    async def restore(self, table: str, rows: Sequence[Row]) -> int:
        """Put archived rows back: events refill a pruned body (or come back whole); runs and
        steps come back under their ids unless present. How many rows changed."""
        values = [typed(table, row) for row in rows]

        def change(conn: Connection) -> int:
            changed = 0
            target = TABLES[table]
            for row in values:
                present = conn.execute(select(target.c.id).where(target.c.id == row["id"])).first()
                if present is None and table == "events":
                    _insert_event(conn, row)
                    changed += 1
                elif present is None:
                    conn.execute(insert(target).values(**row))
                    changed += 1
                elif table == "events":
                    refill = {"body": row["body"], "headers": row["headers"], "pruned_at": None}
                    result = conn.execute(
                        update(events)
                        .where(events.c.id == row["id"], events.c.pruned_at.is_not(None))
                        .values(**refill)
                    )
                    changed += int(result.rowcount)
            return changed

        changed = await self.journal.apply(change)
        if self.dialect.name == "postgresql" and changed:
            await self._advance_sequence(TABLES[table])
        return changed

    async def _advance_sequence(self, table: Table) -> None:
        # Rows inserted under their own ids leave the sequence behind only if it never
        # reached them (a restore into a fresh database): keep it past the largest id.
        sequence = f"pg_get_serial_sequence('{table.name}', 'id')"
        statement = text(
            f"SELECT setval({sequence}, GREATEST((SELECT max(id) FROM {table.name}), "
            f"COALESCE(pg_sequence_last_value({sequence}::regclass), 1)))"
        )
        async with self.engine.begin() as conn:
            await conn.execute(statement)

    async def vacuum(self, pages: int) -> int:
        """Give back up to `pages` free pages to the file system (SQLite with incremental
        auto-vacuum); the pages returned. PostgreSQL's autovacuum reuses space itself: 0."""
        if self.dialect.name != "sqlite":
            return 0

        def change(conn: Connection) -> int:
            before = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
            # pysqlite steps a statement that returns no rows only once, and each step of
            # incremental_vacuum frees one page: one execution per page, all in this commit.
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            for _ in range(min(pages, before)):
                cursor.execute("PRAGMA incremental_vacuum(1)")
            cursor.close()
            return before - int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())

        freed = await self.journal.apply(change)
        if freed:
            # The moved pages sit in the WAL until a checkpoint copies them back and shortens
            # the file; PASSIVE waits for no writer (TRUNCATE would hold ingest back).
            async with self.engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await auto.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        return freed

    async def compact(self) -> None:
        """SQLite: rewrite the file whole with incremental auto-vacuum on (an older file was
        made without it); it needs the database to itself. PostgreSQL: nothing to do."""
        if self.dialect.name != "sqlite":
            return
        async with self.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
            await auto.exec_driver_sql("VACUUM")

    async def size(self) -> int:
        """Bytes the store's database takes (SQLite: the file, WAL excluded)."""
        if self.dialect.name == "sqlite":
            async with self.engine.connect() as conn:
                count = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()
                size = (await conn.exec_driver_sql("PRAGMA page_size")).scalar_one()
            return int(count) * int(size)
        return int(await self._scalar(text("SELECT pg_database_size(current_database())")))

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[bool]:
        """Whether this process is the one pruning now: one at a time across replicas (an
        advisory lock on PostgreSQL, a lock file beside a SQLite database)."""
        if self.dialect.name == "sqlite":
            fd = os.open(f"{self.engine.url.database}.prune.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
                yield True
            finally:
                os.close(fd)
            return
        async with self.engine.connect() as conn:
            lock = text("SELECT pg_try_advisory_lock(:key)")
            held = bool((await conn.execute(lock, {"key": PRUNE_LOCK})).scalar_one())
            try:
                yield held
            finally:
                if held:
                    unlock = text("SELECT pg_advisory_unlock(:key)")
                    await conn.execute(unlock, {"key": PRUNE_LOCK})
                await conn.commit()


def _old_events(
    query: Select[Any],
    before: datetime,
    limit: int,
    source: str | None,
    other_than: Sequence[str],
) -> Select[Any]:
    """Routed events received before `before` still holding a body, no run of theirs
    unfinished or dead: oldest first."""
    unfinished_run = exists().where(runs.c.event_id == events.c.id, runs.c.status.notin_(PRUNABLE))
    query = (
        query.where(
            events.c.pruned_at.is_(None),
            events.c.received_at < before.astimezone(UTC),
            event_status.c.status.notin_(UNROUTED),
            ~unfinished_run,
        )
        .order_by(events.c.received_at)
        .limit(limit)
    )
    if source is not None:
        query = query.where(events.c.source == source)
    if other_than:
        query = query.where(events.c.source.notin_(list(other_than)))
    return query


def _old_runs(
    query: Select[Any],
    before: datetime,
    limit: int,
    rule: str | None,
    other_than: Sequence[str],
) -> Select[Any]:
    query = (
        query.where(runs.c.created_at < before.astimezone(UTC), runs.c.status.in_(PRUNABLE))
        .order_by(runs.c.created_at)
        .limit(limit)
    )
    if rule is not None:
        query = query.where(runs.c.rule == rule)
    if other_than:
        query = query.where(runs.c.rule.notin_(list(other_than)))
    return query


def _strip(conn: Connection, ids: list[int]) -> int:
    if not ids:
        return 0
    result = conn.execute(
        update(events)
        .where(events.c.id.in_(ids), events.c.pruned_at.is_(None))
        .values(body=b"", headers={}, fetched=None, pruned_at=now_utc())
    )
    return int(result.rowcount)


def _delete_runs(conn: Connection, ids: list[int]) -> int:
    if not ids:
        return 0
    conn.execute(update(thread_items).where(thread_items.c.run_id.in_(ids)).values(run_id=None))
    conn.execute(delete(steps).where(steps.c.run_id.in_(ids)))
    return int(conn.execute(delete(runs).where(runs.c.id.in_(ids))).rowcount)


def _insert_event(conn: Connection, row: Row) -> None:
    """An archived event back whole, with the status it was archived in (an archive made
    before migration 0014 has no `received_status`: the status then stands for it, as 0014
    left it for every event stored before it)."""
    values = dict(row)
    status = values.pop("status", None) or values.get("received_status") or "pending"
    values.setdefault("received_status", status)
    conn.execute(insert(events).values(**values))  # the trigger adds its status row
    conn.execute(
        update(event_status).where(event_status.c.event_id == row["id"]).values(status=status)
    )


def plain(table: str, row: Mapping[Any, Any]) -> Row:
    """A row as JSON-ready values: bytes as base64, times as ISO 8601."""
    out: Row = {}
    for column in ARCHIVED[table]:
        value = row.get(column.name)
        if value is not None and isinstance(column.type, LargeBinary):
            value = base64.b64encode(value).decode()
        elif isinstance(value, datetime):
            value = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
        out[str(column.name)] = value
    return out


def typed(table: str, row: Row) -> Row:
    """The inverse of `plain`: values as the table's columns take them."""
    out: Row = {}
    for column in ARCHIVED[table]:
        if column.name not in row:
            continue
        value = row[column.name]
        if value is not None and isinstance(column.type, LargeBinary):
            value = base64.b64decode(value)
        elif value is not None and isinstance(column.type, DateTime):
            value = datetime.fromisoformat(value).astimezone(UTC)
        out[str(column.name)] = value
    return out
