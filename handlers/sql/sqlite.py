"""SQLite for `sql.query`: the file opened read-only, SQLite's own limits on what a query builds,
and an authorizer that allows reading only; a progress handler ends a statement past its time.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.tools import PermanentToolError

# Result columns on SQLite: with every value within max_result_bytes, a row is at most this
# many times that before the cap can cut it (a PostgreSQL row is measured on the server).
MAX_COLUMNS = 64
# What a read-only SQLite statement may do, as the SQLite authorizer names it.
ALLOWED = frozenset(
    {
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_FUNCTION,
        sqlite3.SQLITE_RECURSIVE,
        sqlite3.SQLITE_TRANSACTION,  # the BEGIN/ROLLBACK around the statement
    }
)
# fts3_tokenizer returns the address of a tokenizer (and with two arguments installs one).
DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})


def url_of(url: str) -> str:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise PermanentToolError("handlers.sql.url: name a SQLite file (sqlite:///path.db)")
    path = Path(database).expanduser().resolve()
    if not path.is_file():
        raise PermanentToolError(f"handlers.sql.url: no SQLite database at {path}")
    # `mode=ro`: SQLite opens the file read-only, whatever the statement asks for.
    return f"sqlite+aiosqlite:///file:{path.as_posix()}?mode=ro&uri=true"


def limited(max_bytes: int) -> Callable[..., sqlite3.Connection]:
    """A sqlite3 connection factory that sets SQLite's own limits on what a query builds."""

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = sqlite3.Connection(*args, **kwargs)
        # Both limits also apply to the schema (a wide table, a long CREATE): read it first,
        # so they bind the query's values and result only.
        connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_bytes)
        connection.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, MAX_COLUMNS)
        return connection

    return connect


async def read_only(conn: AsyncConnection, seconds: float) -> None:
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection  # the aiosqlite connection
    await driver.execute("PRAGMA query_only = ON")
    deadline = time.monotonic() + seconds

    def past_deadline() -> int:
        # Non-zero interrupts the running statement: "interrupted".
        return int(time.monotonic() > deadline)

    def authorize(
        action: int, arg1: str | None, arg2: str | None, database: str | None, trigger: str | None
    ) -> int:
        if action == sqlite3.SQLITE_FUNCTION:
            denied = (arg2 or "").lower() in DENIED_FUNCTIONS
            return sqlite3.SQLITE_DENY if denied else sqlite3.SQLITE_OK
        return sqlite3.SQLITE_OK if action in ALLOWED else sqlite3.SQLITE_DENY

    await driver.set_progress_handler(past_deadline, 1000)
    await driver.set_authorizer(authorize)
