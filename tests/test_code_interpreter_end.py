"""The hosted code interpreter's container is deleted when its run ends, through the real
`openai` client on the loopback containers API; the deletion is a journaled step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway import cli
from gateway.assistant import runner as assistant_runner
from gateway.assistant import teardown
from gateway.store import Step as Journaled
from gateway.testing.fake_llm import ScriptedModel, Step, answer, call, code, error
from tests.live import LiveGateway, live_gateway

RULE = """
- name: chart
  schedule: {cron: "0 8 * * MON", timezone: Europe/Paris}
  assistant:
    model: default
    prompt: Chart last week.
    tools: [report.csv, code_interpreter]
"""
DELETE = "code_interpreter.delete"


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as scripted:
        yield scripted


def models(model: ScriptedModel) -> dict[str, Any]:
    return {
        "default": {
            "api": "responses",
            "base_url": model.url,
            "model": "scripted-model",
            "max_retries": 0,
        }
    }


def fire(tmp_path: Path, rule: str = "chart") -> None:
    config = str(tmp_path / "gateway.yaml")
    fired = CliRunner().invoke(cli.app, ["fire", rule, "--config", config])
    assert fired.exit_code == 0, fired.output


def ran_and_went_on(source: str, files: dict[str, bytes] | None = None) -> Step:
    """A turn whose code runs and which calls a tool: the run goes on to another turn (a turn
    that ran code and calls nothing is the run's last)."""
    more = call("report__csv", {"name": "x.csv", "columns": ["a"], "rows": [["1"]]})
    return code(source, files=files, then=more)


def deletion(gw: LiveGateway, run_id: int) -> Journaled:
    """The run's deletion step, once it is journaled (after the run's end)."""

    def found() -> Journaled | None:
        return next((s for s in gw.steps(run_id) if s.tool == DELETE), None)

    return gw.wait_for(found)


def made(model: ScriptedModel) -> list[str]:
    return list(model.containers.containers)


def test_a_succeeded_runs_container_is_deleted_once_the_run_has_ended(
    tmp_path: Path, model: ScriptedModel
) -> None:
    model.script(code("print(1)", logs="1\n"))
    with live_gateway(tmp_path, RULE, models=models(model)) as gw:
        fire(tmp_path)
        [run] = gw.finished_runs(1)
        deleted = deletion(gw, run.id)
        steps = gw.steps(run.id)

    model.assert_all_used()
    assert run.status == "succeeded", run.error
    [container] = made(model)
    assert model.containers.deleted == [container]
    assert deleted.status == "succeeded"
    assert deleted.arguments == {"container_id": container}
    assert deleted.result == {"container_id": container, "outcome": "deleted"}
    # Journaled after every other step, once the run's end was committed.
    assert deleted.position == max(s.position for s in steps)
    assert run.finished_at is not None and deleted.started_at >= run.finished_at


@pytest.mark.parametrize(
    ("ending", "worker", "status"),
    [(error(400), {}, "failed"), (error(503), {"max_attempts": 1}, "dead")],
    ids=["failed", "dead"],
)
def test_the_container_of_a_run_that_failed_or_died_is_deleted_too(
    tmp_path: Path, model: ScriptedModel, ending: Any, worker: dict[str, Any], status: str
) -> None:
    model.script(ran_and_went_on("print(1)"), ending)
    with live_gateway(tmp_path, RULE, models=models(model), worker=worker) as gw:
        fire(tmp_path)
        [run] = gw.finished_runs(1)
        deleted = deletion(gw, run.id)

    model.assert_all_used()
    assert run.status == status
    assert deleted.status == "succeeded"
    assert model.containers.deleted == made(model)


def test_a_run_retried_later_keeps_its_container_until_its_end(
    tmp_path: Path, model: ScriptedModel
) -> None:
    # A 503 after the container exists: the run waits for its retry, not ended: kept.
    model.script(ran_and_went_on("print(1)"), error(503), answer("Done."))
    with live_gateway(tmp_path, RULE, models=models(model)) as gw:
        fire(tmp_path)
        [run] = gw.finished_runs(1)
        deletion(gw, run.id)

    model.assert_all_used()
    assert run.status == "succeeded" and run.attempt == 2
    assert len(made(model)) == 1  # the retry went on in the same container
    assert model.containers.delete_requests == made(model)


def test_a_delete_failing_once_is_tried_again_and_done(
    tmp_path: Path, model: ScriptedModel
) -> None:
    model.script(code("print(1)"))
    model.containers.fail_next_deletes(503)
    with live_gateway(tmp_path, RULE, models=models(model)) as gw:
        fire(tmp_path)
        [run] = gw.finished_runs(1)
        deleted = deletion(gw, run.id)

    [container] = made(model)
    assert model.containers.delete_requests == [container, container]
    assert deleted.status == "succeeded" and deleted.result["outcome"] == "deleted"


def test_a_delete_that_keeps_failing_is_recorded_and_the_run_keeps_its_success(
    tmp_path: Path, model: ScriptedModel
) -> None:
    model.script(code("print(1)"))
    model.containers.fail_next_deletes(*[503] * teardown.DELETE_ATTEMPTS)
    with live_gateway(tmp_path, RULE, models=models(model)) as gw:
        fire(tmp_path)
        [run] = gw.finished_runs(1)
        deleted = deletion(gw, run.id)
        after = gw.runs()

    [container] = made(model)
    assert len(model.containers.delete_requests) == teardown.DELETE_ATTEMPTS
    assert model.containers.deleted == []
    assert deleted.status == "failed"
    assert deleted.error == (
        f"code_interpreter: container {container} not deleted after {teardown.DELETE_ATTEMPTS} "
        "tries (Error code: 503 - scripted 503); it expires at OpenAI after its idle minutes"
    )
    assert [r.status for r in after] == ["succeeded"]


def test_a_container_already_gone_is_recorded_as_gone(tmp_path: Path, model: ScriptedModel) -> None:
    model.script(code("print(1)"))
    model.containers.fail_next_deletes(404)  # expired at OpenAI, or deleted before a crash
    with live_gateway(tmp_path, RULE, models=models(model)) as gw:
        fire(tmp_path)
        [run] = gw.finished_runs(1)
        deleted = deletion(gw, run.id)

    assert len(model.containers.delete_requests) == 1
    assert deleted.status == "succeeded" and deleted.result["outcome"] == "already gone"


def test_keep_container_leaves_the_container_to_expire_at_openai(
    tmp_path: Path, model: ScriptedModel
) -> None:
    rule = RULE.replace("code_interpreter]", "{code_interpreter: {keep_container: true}}]")
    model.script(code("print(1)"))
    with live_gateway(tmp_path, rule, models=models(model)) as gw:
        fire(tmp_path)
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    assert run.status == "succeeded"
    assert model.containers.delete_requests == []
    assert DELETE not in [s.tool for s in steps]
    [container_step] = [s for s in steps if s.tool == "code_interpreter.container"]
    assert container_step.arguments["keep"] is True  # the sweep leaves it too


def test_an_operator_retry_of_a_failed_run_works_in_a_new_container(
    tmp_path: Path, model: ScriptedModel
) -> None:
    model.script(
        ran_and_went_on("print(1)", files={"a.csv": b"a\r\n1\r\n"}),
        error(400),  # the run fails; its container is deleted
        code("print(2)", files={"b.csv": b"b\r\n2\r\n"}),  # after the operator's retry
    )
    with live_gateway(tmp_path, RULE, models=models(model)) as gw:
        fire(tmp_path)
        [failed] = gw.finished_runs(1)
        deletion(gw, failed.id)
        config = str(tmp_path / "gateway.yaml")
        retried = CliRunner().invoke(cli.app, ["retry", str(failed.id), "--config", config])
        assert retried.exit_code == 0, retried.output
        gw.wait_for(lambda: len(model.containers.deleted) == 2 or None)
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    model.assert_all_used()
    assert failed.status == "failed" and run.status == "succeeded", run.error
    first, second = made(model)
    assert model.containers.deleted == [first, second]
    assert [s.arguments["container_id"] for s in steps if s.tool == DELETE] == [first, second]
    # What the first container made stays the run's (downloaded before it was deleted).
    downloads = [s.arguments["name"] for s in steps if s.tool == "code_interpreter.download"]
    assert downloads == ["a.csv", "b.csv"]


def test_a_deletion_a_crash_left_owed_is_made_by_the_next_sweep(
    tmp_path: Path, model: ScriptedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crashed_before_deleting(*_: Any) -> None:
        return None

    model.script(code("print(1)"))
    # The first gateway ends its run and "crashes" before the deletion.
    with monkeypatch.context() as crash:
        crash.setattr(assistant_runner.AssistantRunner, "_release", crashed_before_deleting)
        with live_gateway(tmp_path, RULE, models=models(model)) as gw:
            fire(tmp_path)
            [first] = gw.finished_runs(1)
    assert model.containers.delete_requests == []
    # The next gateway sweeps it as it starts, with no run to make (runs ended SWEEP_SETTLE
    # ago; none here): a quiet gateway would leave it to expire at OpenAI.
    monkeypatch.setattr(teardown, "SWEEP_SETTLE", teardown.timedelta(0))
    with live_gateway(tmp_path, RULE, models=models(model)) as gw:
        deleted = deletion(gw, first.id)
        assert len(gw.runs()) == 1  # no run but the first

    model.assert_all_used()
    [container] = made(model)
    assert model.containers.deleted == [container]
    assert deleted.status == "succeeded" and deleted.arguments == {"container_id": container}
