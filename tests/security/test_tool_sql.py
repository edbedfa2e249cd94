"""Item 10: `sql.query` results have a byte cap, and no query can build a huge value in the
gateway's memory, on SQLite and on PostgreSQL.

Memory is measured as the peak resident size of this process while the query runs, sampled
from /proc, so a value built and dropped again is still seen.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.tools import TOOLS, PermanentToolError
from tests.calls import call_tool
from tests.fixtures import requires_fixtures
from tests.live import live_gateway
from tests.test_handler_sql import reporting_database

SQL = TOOLS["sql.query"]
MiB = 1024 * 1024
CAP = 256 * 1024  # the documented default of handlers.sql.max_result_bytes
MAX_COLUMNS = 64  # the documented most result columns on SQLite
# How much the process may grow while a query runs: the cap, the driver's buffers, slack.
GROWTH = 48 * MiB
BIG_ROWS = 200_000  # rows of 100 characters: 20 MB of text in one table


class PeakRss:
    """The highest resident size of this process between enter and exit, sampled every ms."""

    def __init__(self) -> None:
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> int:
        return self.peak - self.start

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


async def query(settings: dict[str, Any], sql: str) -> dict[str, Any] | str:
    """The result, or the refusal's message; the process must not grow by more than GROWTH."""
    with PeakRss() as rss:
        try:
            arguments = SQL.validate({"query": sql})
            result: dict[str, Any] = await call_tool("sql.query", settings, arguments)
        except PermanentToolError as refused:
            outcome: dict[str, Any] | str = str(refused)
        else:
            outcome = result
    assert rss.growth < GROWTH, f"the process grew by {rss.growth / MiB:.0f} MiB"
    return outcome


def rows_size(result: dict[str, Any]) -> int:
    return len(orjson.dumps(result["rows"]))


@contextmanager
def sqlite_database(tmp_path: Path) -> Iterator[dict[str, Any]]:
    path = tmp_path / "big.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, note TEXT)")
        db.executemany(
            "INSERT INTO big (note) VALUES (?)", ((f"{i:0100d}",) for i in range(BIG_ROWS))
        )
    db.close()
    yield {"url": f"sqlite:///{path}", "max_rows": 500, "timeout_seconds": 10}


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with sqlite_database(tmp_path) as settings:
        yield settings


@pytest.fixture
async def postgres_settings() -> AsyncIterator[dict[str, Any]]:
    setup = (
        "CREATE TABLE big (id int PRIMARY KEY, note text);"
        "INSERT INTO big SELECT i, lpad(i::text, 100, '0') "
        f"FROM generate_series(0, {BIG_ROWS - 1}) AS i"
    )
    async with reporting_database(setup) as url:
        yield {"url": url, "max_rows": 500, "timeout_seconds": 10}


# ---------------------------------------------------------------------------------- SQLite


async def test_sqlite_group_concat_of_a_whole_table_is_refused_at_the_cap(
    sqlite_settings: dict[str, Any],
) -> None:
    outcome = await query(sqlite_settings, "SELECT group_concat(note) FROM big")

    assert outcome == (
        "a value in the result would be longer than 262144 bytes "
        "(handlers.sql.max_result_bytes): select less, e.g. an aggregate or substr()"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT zeroblob(300000000)",
        "SELECT randomblob(300000000)",
        "SELECT length(randomblob(900000000))",
        "WITH RECURSIVE s(v) AS (SELECT 'x' UNION ALL SELECT v || v FROM s) SELECT max(v) FROM s",
    ],
)
async def test_sqlite_cannot_build_a_value_over_the_cap(
    sqlite_settings: dict[str, Any], sql: str
) -> None:
    outcome = await query(sqlite_settings, sql)

    assert isinstance(outcome, str) and "longer than 262144 bytes" in outcome


async def test_sqlite_printf_past_the_cap_gives_null_without_building_it(
    sqlite_settings: dict[str, Any],
) -> None:
    outcome = await query(sqlite_settings, "SELECT printf('%.*c', 300000000, 'x') AS v")

    assert isinstance(outcome, dict) and outcome["rows"] == [[None]]


async def test_sqlite_a_row_of_many_large_columns_is_refused(
    sqlite_settings: dict[str, Any],
) -> None:
    columns = ", ".join(["v"] * (MAX_COLUMNS + 1))
    sql = f"WITH b(v) AS (SELECT randomblob(250000)) SELECT {columns} FROM b"

    outcome = await query(sqlite_settings, sql)

    assert outcome == (f"the result has more than {MAX_COLUMNS} columns: select fewer columns")


async def test_sqlite_as_many_columns_as_allowed_pass(sqlite_settings: dict[str, Any]) -> None:
    columns = ", ".join(["v"] * MAX_COLUMNS)

    outcome = await query(sqlite_settings, f"WITH b(v) AS (SELECT 1) SELECT {columns} FROM b")

    assert isinstance(outcome, dict) and outcome["rows"] == [[1] * MAX_COLUMNS]


async def test_sqlite_fts3_tokenizer_is_refused(sqlite_settings: dict[str, Any]) -> None:
    outcome = await query(sqlite_settings, "SELECT hex(fts3_tokenizer('simple'))")

    assert isinstance(outcome, str) and "not authorized" in outcome


async def test_sqlite_many_rows_under_the_cap_each_are_cut_at_the_cap(
    sqlite_settings: dict[str, Any],
) -> None:
    outcome = await query(sqlite_settings, "SELECT randomblob(100000) FROM big LIMIT 400")

    assert isinstance(outcome, dict)
    assert outcome["truncated"] is True
    assert 0 < rows_size(outcome) <= CAP
    assert "262144 bytes" in outcome["note"]


# Rows of `["<96 x>"]`: 100 bytes each, so 10 rows make a `rows` array of 2 + 10*100 + 9.
TEN_ROWS = 1011
HUNDRED_BYTE_ROWS = "SELECT printf('%.*c', 96, 'x') AS v FROM big LIMIT 10"


@pytest.mark.parametrize(("cap", "rows"), [(TEN_ROWS, 10), (TEN_ROWS - 1, 9)])
async def test_sqlite_rows_are_kept_up_to_the_exact_cap(
    sqlite_settings: dict[str, Any], cap: int, rows: int
) -> None:
    outcome = await query({**sqlite_settings, "max_result_bytes": cap}, HUNDRED_BYTE_ROWS)

    assert isinstance(outcome, dict)
    assert (outcome["row_count"], outcome["truncated"]) == (rows, rows < 10)
    assert rows_size(outcome) <= cap


async def test_sqlite_a_value_as_long_as_the_cap_is_allowed(
    sqlite_settings: dict[str, Any],
) -> None:
    settings = {**sqlite_settings, "max_result_bytes": TEN_ROWS}

    outcome = await query(settings, f"SELECT length(printf('%.*c', {TEN_ROWS}, 'x')) AS n")

    assert isinstance(outcome, dict) and outcome["rows"] == [[TEN_ROWS]]


async def test_sqlite_a_value_one_byte_over_the_cap_is_refused(
    sqlite_settings: dict[str, Any],
) -> None:
    settings = {**sqlite_settings, "max_result_bytes": TEN_ROWS}

    outcome = await query(settings, f"SELECT length(printf('%.*c', {TEN_ROWS + 1}, 'x'))")

    assert isinstance(outcome, str) and f"longer than {TEN_ROWS} bytes" in outcome


@requires_fixtures
def test_a_result_over_the_cap_is_journaled_cut_at_the_cap(tmp_path: Path) -> None:
    rules = (
        "- name: report\n"
        "  on: {source: shop, event: orders/create}\n"
        "  actions:\n"
        "    - sql.query: {query: 'SELECT id, note FROM big ORDER BY id'}\n"
    )
    with sqlite_database(tmp_path) as settings:
        settings["max_rows"] = 5000  # 5000 rows of ~110 bytes: twice the cap
        with live_gateway(tmp_path, rules, handlers={"sql": settings}) as gw:
            gw.post_order("e1")
            [run] = gw.finished_runs(1)
            [step] = gw.steps(run.id)

    assert run.status == "succeeded"
    assert step.result["truncated"] is True
    assert len(orjson.dumps(step.result)) <= CAP + 1024


# ------------------------------------------------------------------------------ PostgreSQL


async def test_postgres_string_agg_of_a_whole_table_stops_at_the_cap(
    postgres_settings: dict[str, Any],
) -> None:
    outcome = await query(postgres_settings, "SELECT string_agg(note, ',') FROM big")

    assert isinstance(outcome, dict)
    assert (outcome["rows"], outcome["truncated"]) == ([], True)
    assert "the first row alone is over 262144 bytes" in outcome["note"]


async def test_postgres_a_huge_value_is_never_sent(postgres_settings: dict[str, Any]) -> None:
    outcome = await query(postgres_settings, "SELECT 1 AS one, repeat('x', 200000000) AS big")

    assert isinstance(outcome, dict)
    assert outcome["columns"] == ["one", "big"]
    assert (outcome["rows"], outcome["truncated"]) == ([], True)


async def test_postgres_many_rows_under_the_cap_each_are_cut_at_the_cap(
    postgres_settings: dict[str, Any],
) -> None:
    sql = "SELECT id, repeat('x', 200000) AS v FROM big ORDER BY id DESC LIMIT 400"

    outcome = await query(postgres_settings, sql)

    assert isinstance(outcome, dict)
    assert outcome["truncated"] is True
    assert [row[0] for row in outcome["rows"]] == [BIG_ROWS - 1]
    assert rows_size(outcome) <= CAP


@pytest.mark.parametrize(("cap", "rows"), [(TEN_ROWS, 10), (TEN_ROWS - 1, 9)])
async def test_postgres_rows_are_kept_up_to_the_exact_cap(
    postgres_settings: dict[str, Any], cap: int, rows: int
) -> None:
    sql = "SELECT repeat('x', 96) AS v FROM big ORDER BY id LIMIT 10"

    outcome = await query({**postgres_settings, "max_result_bytes": cap}, sql)

    assert isinstance(outcome, dict)
    assert (outcome["row_count"], outcome["truncated"]) == (rows, rows < 10)


async def test_postgres_rows_keep_their_order_names_and_types(
    postgres_settings: dict[str, Any],
) -> None:
    sql = (
        "SELECT id, id AS id, note IS NULL, DATE '2026-01-01' + id % 28 AS day, "
        "id::numeric / 4 AS quarter, NULL AS nothing FROM big ORDER BY id DESC LIMIT 3"
    )

    outcome = await query(postgres_settings, sql)

    assert outcome == {
        "columns": ["id", "id", "?column?", "day", "quarter", "nothing"],
        "rows": [
            [199999, 199999, False, "2026-01-24", 49999.75, None],
            [199998, 199998, False, "2026-01-23", 49999.5, None],
            [199997, 199997, False, "2026-01-22", 49999.25, None],
        ],
        "row_count": 3,
        "truncated": False,
    }
