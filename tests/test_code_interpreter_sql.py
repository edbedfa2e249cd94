"""`sql.query` with `save_as`: the rows go into the code interpreter's container as a CSV file
the gateway writes, never retyped by the model through `report.csv`; a resumed run rebuilds
the file from its journal, not from the database."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from gateway.testing.fake_llm import ScriptedModel, answer, call, code, turn
from gateway.testing.smtp import SmtpServer
from tests.live import live_gateway
from tests.test_code_interpreter import fire, model, models, smtp  # noqa: F401  (fixtures)

RULE = """
- name: sales
  schedule: {cron: "0 8 * * MON", timezone: Europe/Paris}
  assistant:
    model: default
    instructions: |-
      Query last week's sales with sql.query, saving the rows as sales.csv (save_as), then
      analyse /mnt/data/sales.csv with the code interpreter and mail the summary.
    prompt: Sales report.
    tools:
      - sql.query
      - code_interpreter: {files: [sales.csv]}
      - email.send
    policy:
      sql.query: {save_as: [sales.csv]}
"""
QUERY = "SELECT day, orders, revenue FROM daily_sales ORDER BY day"
SALES_CSV = b"day,orders,revenue\r\n2026-11-23,12,1204.5\r\n2026-11-24,9,980.25\r\n"
SUMMARY = b"orders,revenue\r\n21,2184.75\r\n"
MAIL = {
    "to": ["sales@example.com"],
    "subject": "Sales",
    "text": "Attached.",
    "html": None,
    "cc": None,
    "attachments": ["sales.csv", "summary.csv"],
}


def reporting_database(path: Path, rows: list[tuple[str, int, float]]) -> dict[str, Any]:
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE IF EXISTS daily_sales")
        db.execute("CREATE TABLE daily_sales (day TEXT, orders INTEGER, revenue REAL)")
        db.executemany("INSERT INTO daily_sales VALUES (?, ?, ?)", rows)
    db.close()
    return {"url": f"sqlite:///{path}"}


def script(scripted: ScriptedModel) -> None:
    scripted.script(
        call("sql__query", {"query": QUERY, "save_as": "sales.csv"}),
        code(
            "df = pd.read_csv('/mnt/data/sales.csv'); df.sum().to_csv('/mnt/data/summary.csv')",
            files={"summary.csv": SUMMARY},
            cite=["summary.csv"],
            then=turn(call("email__send", MAIL)),
        ),
        answer("Sent."),
    )


def test_a_query_saved_as_a_file_goes_into_the_container_as_the_rows_returned(
    tmp_path: Path,
    model: ScriptedModel,  # noqa: F811
    smtp: SmtpServer,  # noqa: F811
) -> None:
    sql = reporting_database(
        tmp_path / "sales.db", [("2026-11-23", 12, 1204.5), ("2026-11-24", 9, 980.25)]
    )
    script(model)
    with live_gateway(
        tmp_path, RULE, models=models(model), handlers={"sql": sql, "email": smtp.settings()}
    ) as gw:
        fire(gw, tmp_path, "sales")
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    model.assert_all_used()
    assert run.status == "succeeded", run.error
    [query] = [s for s in steps if s.tool == "sql.query"]
    assert query.result["saved_as"] == "sales.csv" and query.result["row_count"] == 2
    [upload] = [s for s in steps if s.tool == "code_interpreter.upload"]
    assert upload.arguments == {"name": "sales.csv"}
    [container] = model.containers.containers.values()
    assert container.file("sales.csv").data == SALES_CSV
    [mail] = smtp.messages
    attached = {p.get_filename(): p.get_content() for p in mail.iter_attachments()}
    assert attached["sales.csv"].encode() == SALES_CSV


def test_a_resumed_run_rebuilds_the_saved_file_from_its_journal_not_the_database(
    tmp_path: Path,
    model: ScriptedModel,  # noqa: F811
    smtp: SmtpServer,  # noqa: F811
) -> None:
    database = tmp_path / "sales.db"
    sql = reporting_database(database, [("2026-11-23", 12, 1204.5), ("2026-11-24", 9, 980.25)])
    script(model)
    handlers = {"sql": sql, "email": smtp.settings()}
    worker = {"backoff_base": 2.0, "backoff_max": 2.0}
    smtp.stop()  # the mail fails: the run waits for its retry when the gateway stops
    with live_gateway(tmp_path, RULE, models=models(model), handlers=handlers, worker=worker) as gw:
        fire(gw, tmp_path, "sales")
        gw.wait_for(lambda: any("email.send" in str(r.error) for r in gw.runs()) or None)
    # The rows change before the restarted gateway resumes the run.
    reporting_database(database, [("2026-11-30", 1, 1.0)])
    smtp.start()
    with live_gateway(tmp_path, RULE, models=models(model), handlers=handlers, worker=worker) as gw:
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    model.assert_all_used()
    assert run.status == "succeeded", run.error
    assert [s.tool for s in steps].count("sql.query") == 1
    [mail] = smtp.messages
    attached = {p.get_filename(): p.get_content() for p in mail.iter_attachments()}
    assert attached["sales.csv"].encode() == SALES_CSV  # the rows the model was given
