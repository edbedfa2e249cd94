"""`sql.query`: one SELECT, read-only by the database's own refusal, with row and time limits.

The refusal tests call `run_read_only`, which skips the tool's own text check: what they
prove is that the database (SQLite opened read-only, PostgreSQL in a READ ONLY transaction)
refuses the statement itself. (On PostgreSQL the statement runs nested in a query that
measures its rows, which refuses some statements sooner, as a syntax error; the functions
that write are refused by the READ ONLY transaction.)
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from gateway.tools import TOOLS, PermanentToolError
from handlers.sql import SqlSettings, check_single_select, run_read_only
from tests.calls import call_tool
from tests.postgres import fresh_database

SCHEMA = "sales(id, day TEXT YYYY-MM-DD, region TEXT, amount_eur REAL)"
SQL = TOOLS["sql.query"]


def make_sales_db(path: Path, rows: int = 20) -> Path:
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE sales (id INTEGER PRIMARY KEY, day TEXT, region TEXT, amount REAL)"
        )
        db.executemany(
            "INSERT INTO sales (day, region, amount) VALUES (?, ?, ?)",
            [
                (f"2026-01-{1 + i % 10:02d}", "North" if i % 2 else "South", 10.0 * i)
                for i in range(rows)
            ],
        )
    db.close()
    return path


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> dict[str, Any]:
    path = make_sales_db(tmp_path / "sales.db")
    return {"url": f"sqlite:///{path}", "schema": SCHEMA, "max_rows": 500, "timeout_seconds": 5}


def sqlite_state(settings: dict[str, Any]) -> tuple[int, list[str]]:
    """Rows in sales and the tables there are: what a refused write must leave unchanged."""
    path = settings["url"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        count = db.execute("SELECT count(*) FROM sales").fetchone()[0]
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master ORDER BY name")]
    db.close()
    return count, tables


async def query(settings: dict[str, Any], sql: str, **parameters: Any) -> dict[str, Any]:
    arguments = SQL.validate({"query": sql, "parameters": parameters or None})
    result: dict[str, Any] = await call_tool("sql.query", settings, arguments)
    return result


# ---------------------------------------------------------------------------------- SQLite


async def test_select_with_parameters_returns_columns_and_rows(
    sqlite_settings: dict[str, Any],
) -> None:
    result = await query(
        sqlite_settings,
        "SELECT region, count(*) AS orders, sum(amount) AS revenue FROM sales "
        "WHERE day >= :start AND day < :end GROUP BY region ORDER BY region",
        start="2026-01-01",
        end="2026-01-03",
    )

    assert result == {
        "columns": ["region", "orders", "revenue"],
        "rows": [["North", 2, 120.0], ["South", 2, 100.0]],
        "row_count": 2,
        "truncated": False,
    }


async def test_rows_past_the_limit_are_dropped_and_the_result_says_truncated(
    sqlite_settings: dict[str, Any],
) -> None:
    result = await query({**sqlite_settings, "max_rows": 5}, "SELECT id FROM sales ORDER BY id")

    assert result["rows"] == [[1], [2], [3], [4], [5]]
    assert (result["row_count"], result["truncated"]) == (5, True)


async def test_a_query_past_the_timeout_is_interrupted(sqlite_settings: dict[str, Any]) -> None:
    endless = (
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
    )
    started = asyncio.get_running_loop().time()
    with pytest.raises(PermanentToolError, match=r"did not finish within 0\.3 s"):
        await query({**sqlite_settings, "timeout_seconds": 0.3}, endless)
    assert asyncio.get_running_loop().time() - started < 3


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO sales (day, region, amount) VALUES ('2026-02-01', 'East', 1)",
        "UPDATE sales SET amount = 0",
        "DELETE FROM sales",
        "CREATE TABLE stolen (x)",
        "DROP TABLE sales",
        "ATTACH DATABASE 'elsewhere.db' AS elsewhere",
        "PRAGMA query_only = OFF",
        "SELECT 1; DELETE FROM sales",
        "SELECT load_extension('/tmp/evil')",
        "WITH doomed AS (SELECT 1) DELETE FROM sales",
    ],
)
async def test_the_sqlite_database_itself_refuses_anything_but_reading(
    sqlite_settings: dict[str, Any], statement: str, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)  # where an ATTACH would create its file
    before = sqlite_state(sqlite_settings)

    with pytest.raises(PermanentToolError) as refused:
        await run_read_only(SqlSettings.model_validate(sqlite_settings), statement, {})

    assert "refused" in str(refused.value) or "returned no rows" in str(refused.value)
    assert sqlite_state(sqlite_settings) == before
    assert not (tmp_path / "elsewhere.db").exists()


async def test_the_sqlite_file_is_opened_read_only(sqlite_settings: dict[str, Any]) -> None:
    # Even with the statement's own pragma and authorizer out of the way, the connection
    # cannot write: SQLite answers that the database is read-only.
    with pytest.raises(PermanentToolError, match="refused"):
        await run_read_only(SqlSettings.model_validate(sqlite_settings), "DELETE FROM sales", {})
    path = sqlite_settings["url"].removeprefix("sqlite:///")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        db.execute("DELETE FROM sales")
    db.close()


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("DELETE FROM sales", "only SELECT"),
        ("SELECT 1; DROP TABLE sales", "one statement only"),
        ("select 1 -- ; drop table sales\n", None),
        ("SELECT ';' AS semicolon;", None),
        ("/* a comment */ WITH x AS (SELECT 1) SELECT * FROM x", None),
        ("   ", "empty"),
    ],
)
def test_the_tool_explains_what_is_not_one_select(statement: str, message: str | None) -> None:
    if message is None:
        check_single_select(statement)
        return
    with pytest.raises(PermanentToolError, match=message):
        check_single_select(statement)


async def test_a_syntax_error_goes_back_with_the_database_message(
    sqlite_settings: dict[str, Any],
) -> None:
    with pytest.raises(PermanentToolError, match="no such column: price"):
        await query(sqlite_settings, "SELECT price FROM sales")


async def test_the_tool_description_carries_the_configured_schema(
    sqlite_settings: dict[str, Any],
) -> None:
    description = SQL.definition(SqlSettings.model_validate(sqlite_settings))["description"]

    assert SCHEMA in description
    assert "SQLite" in description
    assert "500 rows" in description
    assert SQL.side_effects is False


# ------------------------------------------------------------------------------ PostgreSQL


@asynccontextmanager
async def reporting_database(setup: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database made by `setup`; yields its plain postgresql:// URL."""
    async with fresh_database() as url:
        plain = url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(plain)
        try:
            await conn.execute(setup)
        finally:
            await conn.close()
        yield plain


@pytest.fixture
async def postgres_settings() -> AsyncIterator[dict[str, Any]]:
    setup = """
        CREATE TABLE sales (id serial PRIMARY KEY, day date, region text, amount numeric);
        INSERT INTO sales (day, region, amount)
            SELECT DATE '2026-01-01' + (i % 10), CASE WHEN i % 2 = 0 THEN 'South'
            ELSE 'North' END, 10 * i FROM generate_series(0, 19) AS i;
        CREATE SEQUENCE seq;
        CREATE TABLE audit (note text);
        CREATE FUNCTION leak() RETURNS int LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO audit VALUES ('written'); RETURN 1; END $$;
    """
    async with reporting_database(setup) as url:
        yield {"url": url, "schema": SCHEMA, "max_rows": 500, "timeout_seconds": 5}


async def postgres_state(settings: dict[str, Any]) -> tuple[int, int, int]:
    conn = await asyncpg.connect(settings["url"])
    try:
        sales = await conn.fetchval("SELECT count(*) FROM sales")
        audit = await conn.fetchval("SELECT count(*) FROM audit")
        tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        return int(sales), int(audit), int(tables)
    finally:
        await conn.close()


async def test_postgres_select_with_parameters(postgres_settings: dict[str, Any]) -> None:
    result = await query(
        postgres_settings,
        "SELECT region, count(*) AS orders, sum(amount) AS revenue FROM sales "
        "WHERE day >= CAST(:start AS date) AND day < CAST(:end AS date) "
        "GROUP BY region ORDER BY region",
        start="2026-01-01",
        end="2026-01-03",
    )

    assert result["columns"] == ["region", "orders", "revenue"]
    assert result["rows"] == [["North", 2, 120], ["South", 2, 100]]


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO sales (region) VALUES ('East')",
        "UPDATE sales SET amount = 0",
        "DELETE FROM sales",
        "CREATE TABLE stolen (x int)",
        "DROP TABLE sales",
        "WITH gone AS (DELETE FROM sales RETURNING id) SELECT count(*) FROM gone",
        "SELECT nextval('seq')",
        "SELECT setval('seq', 100)",
        "SELECT leak()",
        "SELECT * FROM sales FOR UPDATE",
        "SELECT 1; DELETE FROM sales",
        "SET TRANSACTION READ WRITE",
    ],
)
async def test_the_postgres_database_itself_refuses_anything_but_reading(
    postgres_settings: dict[str, Any], statement: str
) -> None:
    before = await postgres_state(postgres_settings)

    with pytest.raises(PermanentToolError, match="refused"):
        await run_read_only(SqlSettings.model_validate(postgres_settings), statement, {})

    assert await postgres_state(postgres_settings) == before


@pytest.mark.parametrize(
    "statement", ["SELECT nextval('seq')", "SELECT setval('seq', 100)", "SELECT leak()"]
)
async def test_a_postgres_function_that_writes_is_refused_by_the_read_only_transaction(
    postgres_settings: dict[str, Any], statement: str
) -> None:
    with pytest.raises(PermanentToolError, match="in a read-only transaction"):
        await run_read_only(SqlSettings.model_validate(postgres_settings), statement, {})


async def test_a_postgres_session_lock_ends_with_the_query(
    postgres_settings: dict[str, Any],
) -> None:
    # Advisory locks are allowed in a read-only transaction; the connection is closed after
    # each query, so the lock cannot outlive it.
    await run_read_only(
        SqlSettings.model_validate(postgres_settings), "SELECT pg_advisory_lock(4242)", {}
    )

    conn = await asyncpg.connect(postgres_settings["url"])
    try:
        assert await conn.fetchval("SELECT pg_try_advisory_lock(4242)") is True
    finally:
        await conn.close()


async def test_postgres_statement_timeout(postgres_settings: dict[str, Any]) -> None:
    with pytest.raises(PermanentToolError, match=r"did not finish within 0\.5 s"):
        await query({**postgres_settings, "timeout_seconds": 0.5}, "SELECT pg_sleep(5)")


async def test_postgres_row_limit(postgres_settings: dict[str, Any]) -> None:
    result = await query({**postgres_settings, "max_rows": 3}, "SELECT id FROM sales ORDER BY id")

    assert (result["rows"], result["truncated"]) == ([[1], [2], [3]], True)
