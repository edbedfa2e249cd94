"""The files the model's answer cites (`container_file_citation` annotations) are the files
the gateway downloads from the container; listing the container is the fallback for a turn
that ran code and cites none. The real `openai` client, the loopback Responses server."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.assistant.responses import turn_from_response
from gateway.testing.fake_llm import ScriptedModel, answer, call, code, turn
from gateway.testing.smtp import SmtpServer
from tests.live import live_gateway
from tests.test_code_interpreter import fire, model, models, smtp  # noqa: F401  (fixtures)

RULE = """
- name: chart
  schedule: {cron: "0 8 * * MON", timezone: Europe/Paris}
  assistant:
    model: default
    prompt: Chart last week and mail the chart to sales@example.com.
    tools: [code_interpreter, email.send]
"""
CHART = b"\x89PNG\r\n\x1a\n" + b"chart" * 50
MAIL = {
    "to": ["sales@example.com"],
    "subject": "Chart",
    "text": "Attached.",
    "html": None,
    "cc": None,
    "attachments": ["chart.png"],
}


def test_the_cited_files_are_downloaded_and_mailed_without_listing_the_container(
    tmp_path: Path,
    model: ScriptedModel,  # noqa: F811
    smtp: SmtpServer,  # noqa: F811
) -> None:
    model.script(
        # The code also leaves a scratch file; the answer cites the chart only.
        code(
            "plot()",
            files={"chart.png": CHART, "scratch.pkl": b"\x80\x04N."},
            cite=["chart.png"],
            then=turn(call("email__send", MAIL)),
        ),
        answer("Mailed."),
    )
    with live_gateway(
        tmp_path, RULE, models=models(model), handlers={"email": smtp.settings()}
    ) as gw:
        fire(gw, tmp_path, "chart")
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    model.assert_all_used()
    assert run.status == "succeeded", run.error
    [download] = [s for s in steps if s.tool == "code_interpreter.download"]
    assert download.status == "succeeded"
    assert download.arguments["name"] == "chart.png"
    assert download.arguments["path"] == "/mnt/data/chart.png"
    assert download.arguments["bytes"] == len(CHART)
    [container] = model.containers.containers.values()
    assert model.containers.content_requests == [container.file("chart.png").id]
    assert model.containers.list_requests == []  # the annotations said which file
    # The turn's step keeps what the answer cited.
    [cited] = [s for s in steps if s.kind == "model" and s.result.get("container_files")]
    assert cited.result["container_files"] == [
        {
            "container_id": container.id,
            "file_id": container.file("chart.png").id,
            "filename": "chart.png",
        }
    ]
    [message] = smtp.messages
    [attached] = list(message.iter_attachments())
    assert attached.get_filename() == "chart.png" and attached.get_content() == CHART


def test_a_turn_that_ran_code_and_cites_nothing_falls_back_to_listing_the_container(
    tmp_path: Path,
    model: ScriptedModel,  # noqa: F811
) -> None:
    model.script(code("plot()", files={"chart.png": CHART, "notes.txt": b"n"}))
    with live_gateway(tmp_path, RULE, models=models(model)) as gw:
        fire(gw, tmp_path, "chart")
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    assert run.status == "succeeded", run.error
    names = sorted(s.arguments["name"] for s in steps if s.tool == "code_interpreter.download")
    assert names == ["chart.png", "notes.txt"]
    [container] = model.containers.containers.values()
    assert model.containers.list_requests == [container.id]


def test_a_file_cited_in_another_container_is_refused_with_a_step_error(
    tmp_path: Path,
    model: ScriptedModel,  # noqa: F811
) -> None:
    elsewhere = ("cntr_elsewhere", "cfile_elsewhere", "theirs.csv")
    model.script(replace(code("plot()"), container_citations=(elsewhere,)))
    with live_gateway(tmp_path, RULE, models=models(model)) as gw:
        fire(gw, tmp_path, "chart")
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    assert run.status == "succeeded", run.error
    [refused] = [s for s in steps if s.tool == "code_interpreter.download"]
    assert refused.status == "failed"
    assert refused.error == (
        "code_interpreter: theirs.csv not downloaded: cited in container cntr_elsewhere, "
        "not the run's"
    )
    assert model.containers.content_requests == [] and model.containers.list_requests == []


def test_a_cited_file_the_container_does_not_have_is_a_step_error_not_a_failed_run(
    tmp_path: Path,
    model: ScriptedModel,  # noqa: F811
) -> None:
    model.script(code("plot()", files={"chart.png": CHART}, cite=["chart.png", "ghost.csv"]))
    with live_gateway(tmp_path, RULE, models=models(model)) as gw:
        fire(gw, tmp_path, "chart")
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    assert run.status == "succeeded", run.error
    downloads = {s.arguments["name"]: s for s in steps if s.tool == "code_interpreter.download"}
    assert downloads["chart.png"].status == "succeeded"
    assert downloads["ghost.csv"].status == "failed"
    assert downloads["ghost.csv"].error == (
        "code_interpreter: ghost.csv not downloaded: no file cfile_no_ghost.csv in the run's "
        "container"
    )


def test_a_run_retried_before_its_downloads_takes_the_citations_from_its_journal(
    tmp_path: Path,
    model: ScriptedModel,  # noqa: F811
) -> None:
    def outage_after_this_turn(_: dict[str, Any]) -> None:
        model.containers.fail_next(503)  # the lookup of the cited file: the run is retried

    model.script(
        code(
            "plot()",
            files={"chart.png": CHART, "scratch.pkl": b"\x80\x04N."},
            cite=["chart.png"],
            expect=outage_after_this_turn,
        )
    )
    with live_gateway(tmp_path, RULE, models=models(model)) as gw:
        fire(gw, tmp_path, "chart")
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    model.assert_all_used()  # the turn that ran the code was not asked again
    assert run.status == "succeeded" and run.attempt == 2, run.error
    [download] = [s for s in steps if s.tool == "code_interpreter.download"]
    assert download.arguments["name"] == "chart.png" and download.status == "succeeded"
    assert model.containers.list_requests == []


def test_container_file_citations_are_read_off_a_responses_answer() -> None:
    # The shape of OpenAI's output_text annotations (openai.types.responses.ResponseOutputText).
    text = "Here is the chart: [chart.png](sandbox:/mnt/data/chart.png)"
    response = {
        "id": "resp_1",
        "model": "gpt-4.1-mini",
        "status": "completed",
        "output": [
            {
                "type": "message",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": text,
                        "annotations": [
                            {
                                "type": "container_file_citation",
                                "container_id": "cntr_1",
                                "file_id": "cfile_1",
                                "filename": "chart.png",
                                "start_index": 19,
                                "end_index": len(text),
                            },
                            {"type": "file_citation", "file_id": "file_9", "filename": "p.md"},
                        ],
                    }
                ],
            }
        ],
    }

    read = turn_from_response(response)

    assert read.container_files == [
        {"container_id": "cntr_1", "file_id": "cfile_1", "filename": "chart.png"}
    ]
    assert read.citations == [{"file_id": "file_9", "filename": "p.md"}]
    assert read.text == text
