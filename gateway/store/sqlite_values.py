"""Values and statements as the SQLite writers that bypass SQLAlchemy send them and read them
back: the event writer's batches (`ingest.sqlite`), the runs a routing page inserts (`runs`)
and the runs a claim takes (`claim`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime


def insert_rows(table: str, columns: Sequence[str], size: int) -> str:
    """`INSERT INTO table (columns) VALUES (?, ...), ...` for `size` rows (qmark style)."""
    row = "(" + ",".join("?" * len(columns)) + ")"
    return f"INSERT INTO {table} ({','.join(columns)}) VALUES " + ",".join([row] * size)


def chunks(count: int) -> list[tuple[int, int]]:
    """`count` rows as (start, size) pieces whose sizes are powers of two, largest first.

    sqlite3 keeps each distinct statement prepared, and a batch of n rows is its own statement:
    batches of every size from 1 to 500 kept ~3 MB of prepared inserts after a load
    (bench/ingest). In pieces of 2^k rows a batch takes at most 9 statements, all cached.
    """
    pieces, start = [], 0
    for bit in reversed(range(count.bit_length())):
        size = 1 << bit
        if count & size:
            pieces.append((start, size))
            start += size
    return pieces


def sqlite_time(value: datetime) -> str:
    # The text form SQLAlchemy's SQLite DateTime reads back (naive UTC); isoformat makes the
    # same text as strftime("%Y-%m-%d %H:%M:%S.%f") in half the time.
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_datetime(text: str | None) -> datetime | None:
    """A datetime column's text as SQLAlchemy's SQLite DateTime reads it, zoned UTC (the store
    writes UTC only; `records.utc`)."""
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def sqlite_value(value: object) -> object:
    """A value as SQLAlchemy would bind it on SQLite: a datetime as its text (naive UTC)."""
    if isinstance(value, datetime):
        return sqlite_time(value)
    return str(value) if isinstance(value, str) else value
