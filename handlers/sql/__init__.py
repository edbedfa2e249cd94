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
  `sqlite.MAX_COLUMNS` columns, so no query can build a large value in the gateway's memory.
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
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ResourceClosedError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncResult, create_async_engine
from sqlalchemy.pool import NullPool

from gateway.tools import Family, FamilySettings, PermanentToolError, ToolContext, ToolError
from handlers.report import CSV_NAME, csv_bytes
from handlers.sql import postgresql, sqlite
from handlers.sql.statement import check_single_select

if TYPE_CHECKING:
    import asyncpg  # type: ignore[import-untyped]

__all__ = ["SqlSettings", "check_single_select", "family", "run_read_only"]

DEFAULT_MAX_ROWS = 500
DEFAULT_MAX_RESULT_BYTES = 256 * 1024
DEFAULT_TIMEOUT = 10.0
# Beyond the statement timeout, how long connecting and fetching may take before we give up.
GRACE_SECONDS = 5.0

Scalar = str | int | float | bool | None


class SqlSettings(FamilySettings):
    """`handlers.sql`: the reporting database and the bounds on one query. A missing `url`
    fails the first call."""

    url: str | None = None
    # Free text for the model: tables, columns, meanings (`schema` in gateway.yaml).
    tables: str | None = Field(None, alias="schema")
    max_rows: int = DEFAULT_MAX_ROWS
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    timeout_seconds: float = DEFAULT_TIMEOUT


family = Family("sql", SqlSettings)


@dataclass(frozen=True)
class Limits:
    """`handlers.sql`'s bounds on one query."""

    max_rows: int
    max_bytes: int
    timeout: float

    @classmethod
    def of(cls, settings: SqlSettings) -> Limits:
        return cls(
            max_rows=settings.max_rows,
            max_bytes=settings.max_result_bytes,
            timeout=settings.timeout_seconds,
        )


@family.tool("sql.query", side_effects=False)
async def query(
    context: ToolContext[SqlSettings, None],
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
    save_as: Annotated[
        str | None,
        Field(
            pattern=CSV_NAME,
            description="Also save the rows as a CSV file of this name (e.g. sales.csv), for "
            "the code interpreter or an email attachment",
        ),
    ] = None,
) -> dict[str, Any]:
    """Run one read-only SELECT on the reporting database and return its rows.

    The result is {"columns": [...], "rows": [[...]], "row_count": n, "truncated": bool}; rows
    past the configured row or byte limit are dropped (truncated is then true, and a "note"
    says which limit): aggregate in SQL. With save_as, the same rows are also a CSV file of
    the run ("saved_as" in the result), exactly as returned.
    """
    check_single_select(query)
    result = await run_read_only(context.settings, query, parameters or {})
    if save_as is not None:
        result["saved_as"] = save_as
        context.files.update(saved_file({"save_as": save_as}, result))
    return result


@query.files
def saved_file(arguments: dict[str, Any], result: Any) -> dict[str, bytes]:
    """The CSV a call with `save_as` made, from its result: what a resumed run gets back
    without asking the database again (which may answer differently by then)."""
    name = arguments.get("save_as")
    if not name:
        return {}
    return {name: csv_bytes(result["columns"], result["rows"])}


@query.describe
def _describe(settings: SqlSettings) -> str:
    """The docstring, plus the schema from config, so the model can write the query."""
    assert query.function.__doc__ is not None
    lines = [" ".join(query.function.__doc__.split("\n\n")[0].split())]
    dialect = _dialect(settings.url or "")
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
    schema = (settings.tables or "").strip()
    if schema:
        lines.append(f"Schema:\n{schema}")
    return "\n".join(lines)


async def run_read_only(
    settings: SqlSettings, sql: str, parameters: Mapping[str, Any]
) -> dict[str, Any]:
    """Execute `sql` as is, in a read-only transaction: the database enforces read-only."""
    # Imported by the first query, not by every gateway that loads the built-in tools (~10 MB).
    import asyncpg

    url = settings.url or ""
    if not url:
        raise PermanentToolError("handlers.sql needs `url` (the reporting database)")
    limits = Limits.of(settings)
    dialect = _dialect(url)
    if dialect == "SQLite":
        engine = create_async_engine(
            sqlite.url_of(url),
            poolclass=NullPool,
            connect_args={"factory": sqlite.limited(limits.max_bytes)},
        )
    elif dialect == "PostgreSQL":
        engine = create_async_engine(postgresql.url_of(url), poolclass=NullPool)
    else:
        raise PermanentToolError(f"handlers.sql.url: unsupported database {url.split(':')[0]!r}")
    try:
        async with asyncio.timeout(limits.timeout + GRACE_SECONDS):
            async with engine.connect() as conn:
                if dialect == "SQLite":
                    await sqlite.read_only(conn, limits.timeout)
                transaction = await conn.begin()
                try:
                    values = dict(parameters)
                    if dialect == "PostgreSQL":
                        await postgresql.read_only(conn, limits.timeout)
                        values = {k: postgresql.value_of(v) for k, v in values.items()}
                        columns = await postgresql.columns(conn, sql, values)
                        statement = postgresql.measured(sql, len(columns), limits.max_bytes)
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
            f"the result has more than {sqlite.MAX_COLUMNS} columns: select fewer columns"
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
