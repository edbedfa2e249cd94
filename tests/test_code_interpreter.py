"""The hosted code interpreter end to end on loopback: the scripted model speaks the Responses
API's `code_interpreter_call` items and the containers endpoints, the real `openai` client
drives them, and the gateway mails the files the code made to a real SMTP server.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from openai import AsyncOpenAI
from typer.testing import CliRunner

from gateway import cli, runview
from gateway.assistant.container import Interpreter
from gateway.assistant.models import CONTAINER_PRICES
from gateway.rules.model import MAX_CONTAINER_FILES, CodeInterpreter
from gateway.store import Run, RunStatus, Store
from gateway.testing.fake_llm import ScriptedModel, answer, call, code, delay, turn
from gateway.testing.smtp import SmtpServer
from tests.live import LiveGateway, live_gateway

ROWS = [["2026-11-23", 12, 1204.5], ["2026-11-24", 9, 980.0], ["2026-11-25", 15, 1630.25]]
# What the container's code "writes": a PNG (the signature, then bytes) and a CSV summary.
CHART = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
SUMMARY = b"week,orders,revenue\r\n2026-11-23,36,3814.75\r\n"
CODE = (
    "import pandas as pd\n"
    "df = pd.read_csv('/mnt/data/sales.csv')\n"
    "df.plot.bar(x='day', y='revenue').figure.savefig('/mnt/data/chart.png')\n"
    "df.sum(numeric_only=True).to_frame().T.to_csv('/mnt/data/summary.csv')\n"
    "print(df.revenue.sum())"
)

# The hosted form of the weekly report (docs/assistants.md, "The weekly report, two ways").
WEEKLY = """
- name: weekly-report-hosted
  schedule: {cron: "0 8 * * MON", timezone: Europe/Paris}
  assistant:
    model: default
    instructions: |-
      Save last week's rows with report.csv as sales.csv, then analyse them with the code
      interpreter (the file is at /mnt/data/sales.csv): chart revenue per day as chart.png and
      write the totals as summary.csv. Mail both to sales@example.com with email.send.
    prompt: Build last week's sales report.
    tools:
      - report.csv
      - code_interpreter: {memory: 4g, files: [sales.csv], max_container_minutes: 10}
      - email.send
    policy:
      email.send: {to: {domains: [example.com]}}
"""

MAIL = {
    "to": ["sales@example.com"],
    "subject": "Sales report",
    "text": "Revenue last week: 3814.75 EUR.",
    "html": None,
    "cc": None,
    "attachments": ["chart.png", "summary.csv"],
}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as scripted:
        yield scripted


TOKEN = "admin-token-for-the-dashboard"
# The start of the chart's bytes in base64: the pages show a file's size, never its content.
CONTENT_NOT_SHOWN = base64.b64encode(CHART[:30]).decode()[:40]


def dashboard_page(gw: LiveGateway, path: str) -> str:
    """A dashboard page as an operator who logged in with the admin token sees it."""
    login = gw.client.post("/ui/login", data={"token": TOKEN, "next": path})
    assert login.status_code == 303, login.text
    with httpx2.Client(base_url=gw.url, cookies=dict(login.cookies.items())) as client:
        page = client.get(path)
    assert page.status_code == 200, page.text
    return page.text


def offers_the_container(body: dict[str, Any]) -> None:
    [hosted] = [t for t in body["tools"] if t["type"] == "code_interpreter"]
    assert isinstance(hosted["container"], str) and hosted["container"].startswith("cntr_")


def deleted_at_the_end(steps: list[Any]) -> list[Any] | None:
    """The run's steps once its last is the deletion of its container (after its end)."""
    return steps if steps and steps[-1].tool == "code_interpreter.delete" else None


def fire(gw: LiveGateway, tmp_path: Path, rule: str) -> None:
    config = str(tmp_path / "gateway.yaml")
    fired = CliRunner().invoke(cli.app, ["fire", rule, "--config", config])
    assert fired.exit_code == 0, fired.output


def models(model: ScriptedModel) -> dict[str, Any]:
    return {"default": {"api": "responses", "base_url": model.url, "model": "scripted-model"}}


def test_weekly_report_code_interpreter_chart_and_summary_are_mailed_as_made(
    tmp_path: Path, smtp: SmtpServer, model: ScriptedModel
) -> None:
    model.script(
        call(
            "report__csv",
            {"name": "sales.csv", "columns": ["day", "orders", "revenue"], "rows": ROWS},
        ),
        # One response: the code runs in the container, then the model mails what it made.
        code(
            CODE,
            logs="3814.75\n",
            files={"chart.png": CHART, "summary.csv": SUMMARY},
            then=turn(call("email__send", MAIL)),
            expect=offers_the_container,
        ),
        answer(
            "Sent the report.",
            expect=lambda body: json.dumps(body["input"]).count("3814.75") >= 1,
        ),
    )
    with live_gateway(
        tmp_path,
        WEEKLY,
        models=models(model),
        handlers={"email": smtp.settings()},
        admin_token=TOKEN,
    ) as gw:
        fire(gw, tmp_path, "weekly-report-hosted")
        [run] = gw.finished_runs(1)
        steps = gw.wait_for(lambda: deleted_at_the_end(gw.steps(run.id)))
        dashboard = dashboard_page(gw, f"/ui/runs/{run.id}")
        spent = gw.query(
            lambda store: store.spending.spent(
                datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
            )
        )
        config = gw.app.state.gateway.config
        page = "\n".join(runview.text(gw.query(lambda s: runview.fetch(s, config, run.id))))

    model.assert_all_used()
    assert run.status == "succeeded", run.error
    # The container is made before the first turn; the CSV goes in once it exists. A turn's
    # calls keep the positions right after it: the downloads, made before the mail, follow.
    assert [s.tool for s in steps if s.kind == "tool"] == [
        "code_interpreter.container",
        "report.csv",
        "code_interpreter.upload",
        "email.send",
        "code_interpreter.download",
        "code_interpreter.download",
        "code_interpreter.delete",  # once the run has ended
    ]
    [mail] = [s for s in steps if s.tool == "email.send"]
    assert all(
        s.started_at is not None and mail.started_at is not None and s.started_at < mail.started_at
        for s in steps
        if s.tool == "code_interpreter.download"
    )
    # The CSV made earlier in the run went into the container through the containers API.
    [container] = model.containers.containers.values()
    assert container.memory_limit == "4g"
    uploaded = container.file("sales.csv")
    assert uploaded.source == "user" and uploaded.data.startswith(b"day,orders,revenue\r\n")
    assert len(model.containers.content_requests) == 2
    # The mail carries exactly the bytes the code made.
    [message] = smtp.messages
    attachments = {str(p.get_filename()): p for p in message.iter_attachments()}
    assert attachments["chart.png"].get_content_type() == "image/png"
    assert attachments["chart.png"].get_content() == CHART
    assert attachments["summary.csv"].get_content().encode() == SUMMARY
    # A container session is priced, on the run and in the day's spending budgets read.
    assert run.cost == pytest.approx(CONTAINER_PRICES["4g"])
    assert spent.cost == pytest.approx(CONTAINER_PRICES["4g"])
    # The run page shows the code, its logs, and the downloads without their bytes.
    assert "df = pd.read_csv('/mnt/data/sales.csv')" in page and "3814.75" in page
    assert f"({len(CHART)} bytes, kept for attachments)" in page
    # So does the dashboard's run page, escaped as HTML.
    assert "df = pd.read_csv(&#39;/mnt/data/sales.csv&#39;)" in dashboard
    assert "code_interpreter, completed" in dashboard and CONTENT_NOT_SHOWN not in dashboard


def test_container_file_over_the_cap_is_refused_with_a_step_error_one_at_the_cap_kept(
    tmp_path: Path, model: ScriptedModel
) -> None:
    rule = WEEKLY.replace(
        "{memory: 4g, files: [sales.csv], max_container_minutes: 10}", "{max_file_bytes: 1000}"
    )
    model.script(
        code(CODE, files={"at-cap.csv": b"x" * 1000, "over-cap.csv": b"y" * 1001}),
        # No call: the code's turn is the answer; its files are collected before the run ends.
    )
    with live_gateway(tmp_path, rule, models=models(model)) as gw:
        fire(gw, tmp_path, "weekly-report-hosted")
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    model.assert_all_used()
    assert run.status == "succeeded", run.error
    downloads = {s.arguments["name"]: s for s in steps if s.tool == "code_interpreter.download"}
    assert downloads["at-cap.csv"].status == "succeeded"
    assert downloads["at-cap.csv"].result["bytes"] == 1000
    refused = downloads["over-cap.csv"]
    assert refused.status == "failed"
    assert refused.error == (
        "code_interpreter: over-cap.csv not downloaded: 1001 bytes, over the 1000-byte cap "
        "(max_file_bytes)"
    )
    # Only the file within the cap was fetched at all.
    [fetched] = model.containers.content_requests
    assert fetched == downloads["at-cap.csv"].arguments["file_id"]


def test_check_refuses_code_interpreter_on_a_chat_profile_naming_it(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "gateway.yaml").write_text(
        "store: sqlite:///x.db\nmodels:\n"
        "  default: {api: responses, model: m}\n"
        "  local: {api: chat, base_url: 'http://127.0.0.1:11434/v1', model: qwen3}\n"
    )
    (tmp_path / "rules" / "a.yaml").write_text(
        "- name: a\n"
        "  on: {source: shop}\n"
        "  assistant:\n"
        "    model: local\n"
        "    prompt: hi\n"
        "    tools: [code_interpreter, email.send]\n"
        "- name: b\n"
        "  on: {source: shop}\n"
        "  assistant:\n"
        "    prompt: hi\n"
        "    tools: [{code_interpreter: {files: ['knowledge:nosuch']}}]\n"
    )

    result = CliRunner().invoke(cli.app, ["check", "--config", str(tmp_path / "gateway.yaml")])

    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert (
        "rule a: assistant.tools: code_interpreter is a hosted Responses API tool: "
        "profile 'local' is on `api: chat`" in output
    )
    assert "rule b: assistant.code_interpreter.files: no collection named 'nosuch'" in output


def test_code_interpreter_options_are_checked_at_their_edges(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from gateway.rules.model import MAX_CONTAINER_FILE_BYTES, Assistant

    at_cap = Assistant.model_validate(
        {
            "prompt": "p",
            "tools": [{"code_interpreter": {"max_file_bytes": MAX_CONTAINER_FILE_BYTES}}],
        }
    )
    assert at_cap.tools == [] and at_cap.code_interpreter is not None
    with pytest.raises(ValidationError, match="max_file_bytes"):
        Assistant.model_validate(
            {"prompt": "p",
             "tools": [{"code_interpreter": {"max_file_bytes": MAX_CONTAINER_FILE_BYTES + 1}}]}
        )  # fmt: skip
    with pytest.raises(ValidationError, match="memory"):
        Assistant.model_validate({"prompt": "p", "tools": [{"code_interpreter": {"memory": "2g"}}]})


def test_knowledge_files_listed_in_files_are_put_in_the_container_once(
    tmp_path: Path, model: ScriptedModel
) -> None:
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "refunds.md").write_text("# Refunds\nRefunds over 100 EUR need a manager.\n")
    rule = WEEKLY.replace(
        "{memory: 4g, files: [sales.csv], max_container_minutes: 10}",
        '{files: ["knowledge:policies"]}',
    )
    model.script(
        call("report__csv", {"name": "x.csv", "columns": ["a"], "rows": [["1"]]}),
        code("print(open('/mnt/data/refunds.md').read())", logs="# Refunds"),
    )
    with live_gateway(
        tmp_path, rule, models=models(model), knowledge={"policies": {"paths": ["kb/*.md"]}}
    ) as gw:
        fire(gw, tmp_path, "weekly-report-hosted")
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    model.assert_all_used()
    assert run.status == "succeeded", run.error
    [upload] = [s for s in steps if s.tool == "code_interpreter.upload"]  # before turn 1 only
    assert upload.arguments == {"name": "refunds.md"}
    [container] = model.containers.containers.values()
    assert container.file("refunds.md").data == (tmp_path / "kb" / "refunds.md").read_bytes()


def test_a_run_past_max_container_minutes_fails_before_its_next_model_turn(
    tmp_path: Path, model: ScriptedModel
) -> None:
    rule = WEEKLY.replace("max_container_minutes: 10", "max_container_minutes: 0.01")  # 0.6 s
    model.script(
        delay(1.0, then=call("report__csv", {"name": "x.csv", "columns": ["a"], "rows": []})),
    )
    with live_gateway(tmp_path, rule, models=models(model)) as gw:
        fire(gw, tmp_path, "weekly-report-hosted")
        [run] = gw.finished_runs(1)

    model.assert_all_used()  # no second turn was asked
    assert run.status == "failed"
    assert run.error is not None
    assert re.fullmatch(
        r"limit reached: code_interpreter container \d+ s old \(max_container_minutes 0.01\)",
        run.error,
    )


def test_the_container_time_cap_holds_from_its_number_of_minutes_on(tmp_path: Path) -> None:
    options = CodeInterpreter(max_container_minutes=10)
    now = datetime.now(UTC)
    interpreter = Interpreter(
        AsyncOpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1"),
        options,
        Run(1, 1, "r", "assistant", "live", RunStatus.RUNNING, None, 1, None, now, now, None, None),
        {},
        Store(f"sqlite:///{tmp_path / 'unused.db'}"),  # over_time reads no store
        [],
        files_of_no_collection,
    )
    interpreter.created = datetime.now(UTC) - timedelta(minutes=9.9)
    assert interpreter.over_time() is None
    interpreter.created = datetime.now(UTC) - timedelta(minutes=10)
    assert interpreter.over_time() == (
        "code_interpreter container 600 s old (max_container_minutes 10)"
    )


async def files_of_no_collection(name: str) -> list[tuple[str, bytes]]:
    raise AssertionError(f"no knowledge collection is listed, yet {name} was read")


def test_files_past_the_per_run_count_are_refused_with_a_step_error(
    tmp_path: Path, model: ScriptedModel
) -> None:
    made = {f"f{n:02}.txt": b"%d" % n for n in range(MAX_CONTAINER_FILES + 1)}
    model.script(code("write files", files=made))
    with live_gateway(tmp_path, WEEKLY, models=models(model)) as gw:
        fire(gw, tmp_path, "weekly-report-hosted")
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    downloads = [s for s in steps if s.tool == "code_interpreter.download"]
    assert len(downloads) == MAX_CONTAINER_FILES + 1
    assert sum(s.status == "succeeded" for s in downloads) == MAX_CONTAINER_FILES
    [refused] = [s for s in downloads if s.status == "failed"]
    assert refused.arguments["name"] == f"f{MAX_CONTAINER_FILES}.txt"
    assert refused.error == (
        f"code_interpreter: f{MAX_CONTAINER_FILES}.txt not downloaded: the run already has "
        f"{MAX_CONTAINER_FILES} container files (the limit)"
    )
    assert len(model.containers.content_requests) == MAX_CONTAINER_FILES


def test_a_containers_api_outage_retries_the_run_and_a_refusal_fails_it(
    tmp_path: Path, model: ScriptedModel
) -> None:
    model.script(code("print(1)", logs="1\n"))
    model.containers.fail_next(503)  # creating the container: the run is retried, then works
    with live_gateway(tmp_path, WEEKLY, models=models(model)) as gw:
        fire(gw, tmp_path, "weekly-report-hosted")
        [run] = gw.finished_runs(1)
        assert run.status == "succeeded", run.error
        assert run.attempt == 2
        # Its container is deleted once it has ended: only then may the next call fail.
        gw.wait_for(lambda: deleted_at_the_end(gw.steps(run.id)))

        model.containers.fail_next(400)  # refused for good: the run fails, saying why
        fire(gw, tmp_path, "weekly-report-hosted")
        refused = gw.finished_runs(2)[-1]

    model.assert_all_used()
    assert refused.status == "failed"
    assert refused.error == "code_interpreter: Error code: 400 - scripted 400"


def test_the_rules_api_lists_code_interpreter_among_the_rules_tools(
    tmp_path: Path, model: ScriptedModel
) -> None:
    with live_gateway(tmp_path, WEEKLY, models=models(model), admin_token=TOKEN) as gw:
        listed = gw.client.get("/api/rules", headers={"Authorization": f"Bearer {TOKEN}"})

    assert listed.status_code == 200, listed.text
    [rule] = listed.json()["items"]
    assert rule["assistant"]["tools"] == ["report.csv", "email.send", "code_interpreter"]
