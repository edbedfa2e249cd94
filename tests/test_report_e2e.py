"""The weekly sales report (rules/reports.yaml) end to end on loopback.

A SQLite sales database made here, the scripted model driving `sql.query`, `report.csv`,
`report.chart` and `email.send` through the real `openai` client, and a real SMTP server that
must receive one mail whose CSV matches the database and whose chart is a PNG.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway import cli
from gateway.scheduler import periods
from gateway.testing.fake_llm import ScriptedModel, answer, call
from gateway.testing.smtp import SmtpServer
from tests.live import live_gateway

REPORTS = Path(__file__).parent.parent / "rules" / "reports.yaml"
QUERY = (
    "SELECT day, count(*) AS orders, sum(quantity) AS quantity, round(sum(amount_eur), 2) "
    "AS revenue FROM sales WHERE day >= :start AND day < :end GROUP BY day ORDER BY day"
)
COLUMNS = ["day", "orders", "quantity", "revenue"]
SCHEMA = "sales(id, day TEXT YYYY-MM-DD Paris time, region, product, quantity, amount_eur)"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as scripted:
        yield scripted


def make_sales_db(path: Path, week_start: date) -> list[tuple[str, str, str, int, float]]:
    """Orders on the days of last week, plus some just before and after it (not reported)."""
    lines = []
    for offset in range(-2, 9):
        day = (week_start + timedelta(days=offset)).isoformat()
        for n in range(1 + offset % 3):
            lines.append((day, ["North", "South"][n % 2], f"P{n}", 1 + n, 10.5 * (offset + 3) + n))
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE sales (id INTEGER PRIMARY KEY, day TEXT, region TEXT, product TEXT, "
            "quantity INTEGER, amount_eur REAL)"
        )
        db.executemany(
            "INSERT INTO sales (day, region, product, quantity, amount_eur) VALUES (?, ?, ?, ?, ?)",
            lines,
        )
    db.close()
    return lines


def expected_rows(
    lines: list[tuple[str, str, str, int, float]], start: str, end: str
) -> list[list[Any]]:
    """Last week's totals per day, computed here from the seeded lines, not by SQL."""
    days: dict[str, list[Any]] = {}
    for day, _region, _product, quantity, amount in lines:
        if start <= day < end:
            row = days.setdefault(day, [day, 0, 0, 0.0])
            row[1] += 1
            row[2] += quantity
            row[3] += amount
    return [[d, n, q, round(r, 2)] for d, n, q, r in sorted(days.values())]


def last_output(body: dict[str, Any]) -> Any:
    outputs = [i["output"] for i in body["input"] if i.get("type") == "function_call_output"]
    return json.loads(outputs[-1])


def test_weekly_sales_report_mails_a_csv_matching_the_database_and_a_png_chart(
    tmp_path: Path, smtp: SmtpServer, model: ScriptedModel
) -> None:
    week = periods(datetime.now(UTC), "Europe/Paris")["last_week"]
    start, end = week["start_date"], week["end_date"]
    lines = make_sales_db(tmp_path / "sales.db", date.fromisoformat(start))
    rows = expected_rows(lines, start, end)
    assert len(rows) == 7
    csv_name, png_name = f"sales-{start}.csv", f"sales-{start}.png"

    def asks_for_last_week(body: dict[str, Any]) -> None:
        prompt = json.dumps(body["input"])
        assert f"{start} (included)" in prompt and f"{end} (excluded)" in prompt
        [sql] = [t for t in body["tools"] if t["name"] == "sql__query"]
        assert "one read-only SELECT" in sql["description"]

    def got_the_rows(body: dict[str, Any]) -> None:
        assert last_output(body) == {
            "columns": COLUMNS,
            "rows": rows,
            "row_count": 7,
            "truncated": False,
        }

    def wrote_the_csv(body: dict[str, Any]) -> None:
        assert last_output(body)["name"] == csv_name

    model.script(
        call(
            "sql__query",
            {"query": QUERY, "parameters": {"start": start, "end": end}},
            expect=asks_for_last_week,
        ),
        call(
            "report__csv",
            {"name": csv_name, "columns": COLUMNS, "rows": rows},
            expect=got_the_rows,
        ),
        call(
            "report__chart",
            {
                "name": png_name,
                "title": f"Revenue per day, week of {start}",
                "labels": [r[0] for r in rows],
                "values": [r[3] for r in rows],
                "kind": "bar",
            },
            expect=wrote_the_csv,
        ),
        call(
            "email__send",
            {
                "to": ["sales@example.com"],
                "subject": f"Sales report, week of {start}",
                "text": f"Revenue last week: {sum(r[3] for r in rows):.2f} EUR.",
                "html": None,
                "cc": None,
                "attachments": [csv_name, png_name],
            },
        ),
        answer("Sent the weekly sales report to sales@example.com."),
    )
    with live_gateway(
        tmp_path,
        REPORTS.read_text(),
        models={"default": {"api": "responses", "base_url": model.url, "model": "scripted-model"}},
        handlers={
            "email": smtp.settings(),
            "sql": {"url": f"sqlite:///{tmp_path / 'sales.db'}", "schema": SCHEMA},
        },
    ) as gw:
        fired = CliRunner().invoke(
            cli.app, ["fire", "weekly-sales-report", "--config", str(tmp_path / "gateway.yaml")]
        )
        assert fired.exit_code == 0, fired.output
        assert re.search(r"event \d+", fired.output)
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    model.assert_all_used()
    assert run.status == "succeeded", run.error
    tools = [s.tool for s in steps if s.kind == "tool"]
    assert tools == ["sql.query", "report.csv", "report.chart", "email.send"]
    [message] = smtp.messages
    assert message["To"] == "sales@example.com"
    attachments = {str(part.get_filename()): part for part in message.iter_attachments()}
    assert sorted(attachments) == sorted([csv_name, png_name])
    assert attachments[csv_name].get_content_type() == "text/csv"
    content: str = attachments[csv_name].get_content()
    parsed = list(csv.reader(io.StringIO(content)))
    assert parsed[0] == COLUMNS
    assert [[d, int(n), int(q), float(r)] for d, n, q, r in parsed[1:]] == rows
    png: bytes = attachments[png_name].get_content()
    assert attachments[png_name].get_content_type() == "image/png"
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
