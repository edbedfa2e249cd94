"""`sql.query`: one SELECT against the reporting database, which itself refuses anything else.

Settings (`handlers.sql` in gateway.yaml):

    sql:
      url: ${REPORTING_DB_URL}        # sqlite:///sales.db or postgresql://reader@host/db
      schema: |                       # free text for the model: tables, columns, meanings
        orders(id, day DATE, region TEXT, amount_eur NUMERIC) -- one row per paid order
      max_rows: 500                   # rows returned at most; the result says `truncated`
      max_result_bytes: 262144        # the rows' JSON at most; past it, `truncated` and a note
      timeout_seconds: 10             # per statement

Our own check (one statement, starting with SELECT or WITH) only gives the model a clear
message early; the guarantee comes from the database:

- SQLite: the file is opened read-only (`file:...?mode=ro`), `PRAGMA query_only=ON` is set, and
  an authorizer allows reading only (no ATTACH, no PRAGMA, no writes, no `fts3_tokenizer`,
  which hands out a pointer); a progress handler interrupts a statement past the timeout.
  sqlite3 itself runs one statement per call. SQLite's own limits keep every value (a
  `group_concat`, a `zeroblob`) within `max_result_bytes` and a result row within
  SQLITE_MAX_COLUMNS columns, so no query can build a large value in the gateway's memory.
- PostgreSQL: each query runs in its own `SET TRANSACTION READ ONLY` transaction with a
  `statement_timeout`, rolled back afterwards; asyncpg prepares the statement, which refuses
  several commands. The statement runs inside a query that sums the size of the rows' text as
  they stream from a cursor, and sends no value once that passes `max_result_bytes`, so a
  `repeat('x', 1e9)` stays on the server. A read-only transaction still lets a function run
  that is not marked as writing (`dblink`, `pg_notify`, `pg_advisory_lock`; each query has
  its own connection, so a session lock ends with it), so connect as a role that can only
  read what reports need:

      CREATE ROLE gateway_reader LOGIN PASSWORD '...' NOSUPERUSER NOCREATEDB NOCREATEROLE;
      ALTER ROLE gateway_reader SET default_transaction_read_only = on;
      ALTER ROLE gateway_reader SET statement_timeout = '10s';
      GRANT CONNECT ON DATABASE sales TO gateway_reader;
      GRANT USAGE ON SCHEMA public TO gateway_reader;
      GRANT SELECT ON ALL TABLES IN SCHEMA public TO gateway_reader;
      REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;  -- then grant what is needed

  (and no membership in `pg_write_server_files`, `pg_execute_server_program` or the like).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from pydantic import Field
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, ResourceClosedError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncResult, create_async_engine
from sqlalchemy.pool import NullPool

from gateway.tools import PermanentToolError, ToolContext, ToolError, tool

DEFAULT_MAX_ROWS = 500
DEFAULT_MAX_RESULT_BYTES = 256 * 1024
DEFAULT_TIMEOUT = 10.0
# Result columns on SQLite: with every value within max_result_bytes, a row is at most this
# many times that before the cap can cut it (a PostgreSQL row is measured on the server).
SQLITE_MAX_COLUMNS = 64
# Beyond the statement timeout, how long connecting and fetching may take before we give up.
GRACE_SECONDS = 5.0

Scalar = str | int | float | bool | None
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"
)

# What a read-only SQLite statement may do, as the SQLite authorizer names it.
_SQLITE_ALLOWED = frozenset(
    {
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_FUNCTION,
        sqlite3.SQLITE_RECURSIVE,
        sqlite3.SQLITE_TRANSACTION,  # the BEGIN/ROLLBACK around the statement
    }
)
# fts3_tokenizer returns the address of a tokenizer (and with two arguments installs one).
_SQLITE_DENIED_FUNCTIONS = frozenset(
    {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
)


@dataclass(frozen=True)
class Limits:
    """`handlers.sql`'s bounds on one query."""

    max_rows: int
    max_bytes: int
    timeout: float

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> Limits:
        return cls(
            max_rows=int(settings.get("max_rows", DEFAULT_MAX_ROWS)),
            max_bytes=int(settings.get("max_result_bytes", DEFAULT_MAX_RESULT_BYTES)),
            timeout=float(settings.get("timeout_seconds", DEFAULT_TIMEOUT)),
        )


@tool("sql.query", side_effects=False)
async def query(
    context: ToolContext,
    query: Annotated[
        str,
        Field(
            description="One SELECT (or WITH ... SELECT) statement; use :name placeholders "
            "for values"
        ),
    ],
    parameters: Annotated[
        dict[str, Scalar] | None,
        Field(description="Values for the :name placeholders in the query"),
    ] = None,
) -> dict[str, Any]:
    """Run one read-only SELECT on the reporting database and return its rows.

    The result is {"columns": [...], "rows": [[...]], "row_count": n, "truncated": bool}; rows
    past the configured row or byte limit are dropped (truncated is then true, and a "note"
    says which limit): aggregate in SQL.
    """
    check_single_select(query)
    return await run_read_only(context.settings, query, parameters or {})


@query.describe
def _describe(settings: Mapping[str, Any]) -> str:
    """The docstring, plus the schema from config, so the model can write the query."""
    assert query.function.__doc__ is not None
    lines = [" ".join(query.function.__doc__.split("\n\n")[0].split())]
    dialect = _dialect(str(settings.get("url", "")))
    if dialect == "PostgreSQL":
        lines.append(
            "The database is PostgreSQL; a YYYY-MM-DD (or ISO datetime) parameter is sent as "
            "a date (datetime): compare it with date or timestamp columns."
        )
    elif dialect:
        lines.append(f"The database is {dialect}.")
    limits = Limits.of(settings)
    lines.append(
        f"At most {limits.max_rows} rows and {limits.max_bytes} bytes of rows are returned; "
        "the result is {columns, rows, row_count, truncated}. Aggregate in SQL."
    )
    schema = str(settings.get("schema") or "").strip()
    if schema:
        lines.append(f"Schema:\n{schema}")
    return "\n".join(lines)


def check_single_select(sql: str) -> None:
    """Refuse, with a message for the model, what is not one SELECT: the database refuses
    it too, this only says why in plain words."""
    body = _strip(sql)
    statements = [s for s in _split(body) if s.strip()]
    if not statements:
        raise PermanentToolError("the query is empty")
    if len(statements) > 1:
        raise PermanentToolError("one statement only: remove the `;` between statements")
    first = statements[0].split(None, 1)[0].lower()
    if first not in ("select", "with"):
        raise PermanentToolError(f"only SELECT queries are allowed, not {first.upper()}")


async def run_read_only(
    settings: Mapping[str, Any], sql: str, parameters: Mapping[str, Any]
) -> dict[str, Any]:
    """Execute `sql` as is, in a read-only transaction: the database enforces read-only."""
    url = str(settings.get("url") or "")
    if not url:
        raise PermanentToolError("handlers.sql needs `url` (the reporting database)")
    limits = Limits.of(settings)
    dialect = _dialect(url)
    if dialect == "SQLite":
        engine = create_async_engine(
            _sqlite_url(url),
            poolclass=NullPool,
            connect_args={"factory": _sqlite_limited(limits.max_bytes)},
        )
    elif dialect == "PostgreSQL":
        engine = create_async_engine(_postgres_url(url), poolclass=NullPool)
    else:
        raise PermanentToolError(f"handlers.sql.url: unsupported database {url.split(':')[0]!r}")
    try:
        async with asyncio.timeout(limits.timeout + GRACE_SECONDS):
            async with engine.connect() as conn:
                if dialect == "SQLite":
                    await _sqlite_read_only(conn, limits.timeout)
                transaction = await conn.begin()
                try:
                    values = dict(parameters)
                    if dialect == "PostgreSQL":
                        await _postgres_read_only(conn, limits.timeout)
                        values = {k: _postgres_value(v) for k, v in values.items()}
                        columns = await _postgres_columns(conn, sql, values)
                        statement = _postgres_measured(sql, len(columns), limits.max_bytes)
                    else:
                        columns, statement = [], sql
                    # A cursor, row by row: only what fits within the limits is ever read.
                    result = await conn.stream(
                        text(statement).execution_options(yield_per=1), values
                    )
                    try:
                        columns = columns or _keys(result)
                        if not columns:
                            raise PermanentToolError("the statement returned no rows: use a SELECT")
                        rows, note = await _collect(
                            result, limits, measured=dialect == "PostgreSQL"
                        )
                    finally:
                        await result.close()
                finally:
                    await transaction.rollback()
    except TimeoutError:
        raise PermanentToolError(
            f"the query did not finish within {limits.timeout:g} s: make it cheaper"
        ) from None
    except (DBAPIError, asyncpg.PostgresError) as exc:
        raise _db_error(exc, limits) from None
    except SQLAlchemyError as exc:  # e.g. a :placeholder without a value
        raise PermanentToolError(f"the query is invalid: {exc}") from None
    finally:
        await engine.dispose()
    found: dict[str, Any] = {
        "columns": columns,
        "rows": rows,
        "row_count": len(rows),
        "truncated": note is not None,
    }
    return found if note is None else {**found, "note": note}


def _keys(result: AsyncResult[Any]) -> list[str]:
    try:
        return list(result.keys())
    except ResourceClosedError:  # a statement without rows (BEGIN)
        return []


async def _collect(
    result: AsyncResult[Any], limits: Limits, *, measured: bool
) -> tuple[list[list[Any]], str | None]:
    """The rows that fit within the limits, and a note saying which limit cut the rest.

    A measured row (PostgreSQL) starts with the size of the rows' text so far, as the server
    counted it: past the cap, its values were not sent.
    """
    rows: list[list[Any]] = []
    size = len("[]")
    async for row in result:
        values = list(row)
        if measured:
            sent, values = values[0], values[1:]
            if sent > limits.max_bytes:
                return rows, _over_bytes(rows, limits)
        if len(rows) == limits.max_rows:
            return rows, (
                f"only the first {limits.max_rows} rows are returned "
                "(handlers.sql.max_rows): aggregate in SQL"
            )
        values = [_jsonable(value) for value in values]
        added = len(orjson.dumps(values)) + (1 if rows else 0)  # the comma between rows
        if size + added > limits.max_bytes:
            return rows, _over_bytes(rows, limits)
        rows.append(values)
        size += added
    return rows, None


def _over_bytes(rows: list[list[Any]], limits: Limits) -> str:
    cap = f"{limits.max_bytes} bytes (handlers.sql.max_result_bytes)"
    if not rows:
        return f"the first row alone is over {cap}: select fewer or shorter columns"
    return (
        f"only the first {len(rows)} rows are returned: the rows are capped at {cap}; "
        "select fewer columns or aggregate in SQL"
    )


def _dialect(url: str) -> str | None:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    return {"sqlite": "SQLite", "postgresql": "PostgreSQL", "postgres": "PostgreSQL"}.get(scheme)


def _sqlite_url(url: str) -> str:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise PermanentToolError("handlers.sql.url: name a SQLite file (sqlite:///path.db)")
    path = Path(database).expanduser().resolve()
    if not path.is_file():
        raise PermanentToolError(f"handlers.sql.url: no SQLite database at {path}")
    # `mode=ro`: SQLite opens the file read-only, whatever the statement asks for.
    return f"sqlite+aiosqlite:///file:{path.as_posix()}?mode=ro&uri=true"


def _postgres_url(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def _sqlite_limited(max_bytes: int) -> Callable[..., sqlite3.Connection]:
    """A sqlite3 connection factory that sets SQLite's own limits on what a query builds."""

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = sqlite3.Connection(*args, **kwargs)
        # Both limits also apply to the schema (a wide table, a long CREATE): read it first,
        # so they bind the query's values and result only.
        connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_bytes)
        connection.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, SQLITE_MAX_COLUMNS)
        return connection

    return connect


async def _sqlite_read_only(conn: AsyncConnection, seconds: float) -> None:
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
            denied = (arg2 or "").lower() in _SQLITE_DENIED_FUNCTIONS
            return sqlite3.SQLITE_DENY if denied else sqlite3.SQLITE_OK
        return sqlite3.SQLITE_OK if action in _SQLITE_ALLOWED else sqlite3.SQLITE_DENY

    await driver.set_progress_handler(past_deadline, 1000)
    await driver.set_authorizer(authorize)


async def _postgres_read_only(conn: AsyncConnection, seconds: float) -> None:
    await conn.execute(text("SET TRANSACTION READ ONLY"))
    await conn.execute(text(f"SET LOCAL statement_timeout = {max(1, int(seconds * 1000))}"))
    # A snapshot taken: `SET TRANSACTION READ WRITE` is refused from here on.
    await conn.execute(text("SELECT 1"))


async def _postgres_columns(
    conn: AsyncConnection, sql: str, values: Mapping[str, Any]
) -> list[str]:
    """The names of the statement's columns, without running it (LIMIT 0 reads no row)."""
    probe = f"SELECT * FROM (\n{_body(sql)}\n) AS gateway_query LIMIT 0"
    result = await conn.execute(text(probe), dict(values))
    if not result.returns_rows:
        raise PermanentToolError("the statement returned no rows: use a SELECT")
    return list(result.keys())


def _postgres_measured(sql: str, count: int, max_bytes: int) -> str:
    """`sql` wrapped to send, first in each row, the size of the rows' text so far, and no
    value at all past `max_bytes`: a huge value is measured on the server, never sent.

    The columns are renamed by position, so duplicate or odd names cannot clash; a window
    with no ORDER BY keeps the statement's own order.
    """
    names = [f"c{i}" for i in range(count)]
    renamed = f"({', '.join(names)})" if names else ""
    kept = "".join(f", CASE WHEN gateway_size <= {max_bytes} THEN {n} END" for n in names)
    return (
        f"SELECT gateway_size{kept} FROM (SELECT gateway_query.*, "
        "sum(octet_length(gateway_query::text)) OVER (ROWS UNBOUNDED PRECEDING) "
        f"AS gateway_size FROM (\n{_body(sql)}\n) AS gateway_query{renamed}) AS gateway_rows"
    )


def _body(sql: str) -> str:
    """The statement without a final `;` (and what follows it), to nest it in another."""
    return sql[: len(_strip(sql).rstrip().rstrip(";"))]


def _postgres_value(value: Any) -> Any:
    """asyncpg sends a parameter as the type PostgreSQL infers for it, and a JSON argument
    has no date type: an ISO date or datetime string goes as a date or datetime."""
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        with contextlib.suppress(ValueError):
            return dt.date.fromisoformat(value)
    if isinstance(value, str) and _ISO_DATETIME.fullmatch(value):
        with contextlib.suppress(ValueError):
            return dt.datetime.fromisoformat(value)
    return value


def _db_error(exc: DBAPIError | asyncpg.PostgresError, limits: Limits) -> ToolError:
    # A server-side cursor's fetch raises asyncpg's own errors, unwrapped by SQLAlchemy.
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(exc).__name__
    lowered = message.lower()
    if "interrupted" in lowered or "statement timeout" in lowered:
        return PermanentToolError(
            f"the query did not finish within {limits.timeout:g} s: make it cheaper ({message})"
        )
    if "string or blob too big" in lowered:
        return PermanentToolError(
            f"a value in the result would be longer than {limits.max_bytes} bytes "
            "(handlers.sql.max_result_bytes): select less, e.g. an aggregate or substr()"
        )
    if "too many columns in result set" in lowered:
        return PermanentToolError(
            f"the result has more than {SQLITE_MAX_COLUMNS} columns: select fewer columns"
        )
    if isinstance(exc, DBAPIError) and (exc.connection_invalidated or _unreachable(cause)):
        return ToolError(f"cannot reach the reporting database: {message}")
    return PermanentToolError(f"the database refused the query: {message}")


def _unreachable(cause: BaseException) -> bool:
    return isinstance(cause, OSError | ConnectionError) or "connect" in str(cause).lower()


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _strip(sql: str) -> str:
    """The query with its comments blanked out (string literals kept): same length, so a
    position in it is the same position in the query."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == c:
                    if end + 1 < n and sql[end + 1] == c:  # doubled quote inside the literal
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            end = n if newline < 0 else newline
            out.append(" " * (end - i))
            i = end
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            end = n if close < 0 else close + 2
            out.append(re.sub(r"[^\n]", " ", sql[i:end]))
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _split(sql: str) -> list[str]:
    """Statements separated by `;` outside quotes (comments already stripped)."""
    parts: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for c in sql:
        if quote:
            current.append(c)
            if c == quote:
                quote = None  # a doubled quote reopens at once: same effect
        elif c in ("'", '"'):
            quote = c
            current.append(c)
        elif c == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts
