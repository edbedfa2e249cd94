"""`gateway eval`: stored events replayed through candidate rules on loopback; the report
names exactly the events whose proposed calls changed, and no side effect leaves the eval."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.store import Step, Store
from gateway.testing.fake_jira import FakeJira
from gateway.testing.fake_llm import ScriptedModel, answer, call
from gateway.testing.server import serve_in_thread
from gateway.testing.smtp import SmtpServer
from tests.fixtures import requires_fixtures
from tests.live import live_gateway, priced_models

pytestmark = requires_fixtures

LIVE = """
- name: file-order
  on: {source: shop, event: orders/create}
  actions:
    - jira.create_issue: {project: OPS, summary: "Order {{ payload.name }}"}
    - email.send: {to: [sales@example.com], subject: "Order {{ payload.name }}", text: "new"}
"""
# The candidate files big orders only, and with a new summary for the very big ones.
CANDIDATE = """
- name: file-order
  on: {source: shop, event: orders/create}
  actions:
    - jira.create_issue:
        project: OPS
        summary: "{{ 'Big' if payload.total_price | float > 900 else 'Order' }} {{ payload.name }}"
      when: "{{ payload.total_price | float > 100 }}"
    - email.send: {to: [sales@example.com], subject: "Order {{ payload.name }}", text: "new"}
"""


@pytest.fixture
def jira() -> Iterator[tuple[FakeJira, str]]:
    fake = FakeJira(projects=("OPS",))
    with serve_in_thread(fake) as url:
        yield fake, url


def tool_step(steps: list[Step]) -> Step:
    return next(step for step in steps if step.kind == "tool")


def eval_steps(path: Path, run_id: int) -> list[Step]:
    async def read() -> list[Step]:
        store = Store(f"sqlite:///{path}")
        await store.open()
        try:
            return await store.steps.of_run(run_id)
        finally:
            await store.close()

    return asyncio.run(read())


def eval_cli(tmp_path: Path, candidate: str, *args: str) -> tuple[int, str, dict[str, object]]:
    folder = tmp_path / "candidate"
    folder.mkdir(exist_ok=True)
    (folder / "rules.yaml").write_text(candidate)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--config",
            str(tmp_path / "gateway.yaml"),
            "--rules",
            str(folder),
            "--out",
            str(out),
            *args,
        ],
    )
    report = json.loads(out.read_text()) if out.exists() else {}
    return result.exit_code, result.output, report


def test_eval_reports_exactly_the_events_whose_calls_changed_and_calls_nothing(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    prices = [50.0 + 50 * i for i in range(20)]  # 50 .. 1000: 2 small, 2 very big
    with SmtpServer() as smtp:
        handlers = {"jira": {"server": url, "user": "u", "password": "p"}, "email": smtp.settings()}
        with live_gateway(tmp_path, LIVE, handlers=handlers) as gw:
            for i, price in enumerate(prices):
                gw.post_order(f"e{i}", name=f"#{i}", total_price=f"{price:.2f}")
            live_runs = gw.finished_runs(20)
            live_steps = [gw.steps(run.id) for run in live_runs]
            issues, mails = len(fake.issues), len(smtp.messages)
            assert (issues, mails) == (20, 20)

            code, output, report = eval_cli(tmp_path, CANDIDATE, "--last", "20")

            assert (len(fake.issues), len(smtp.messages)) == (issues, mails)  # nothing reached
            # The live store is as it was: no new run or step, none changed.
            assert gw.runs() == live_runs
            assert [gw.steps(run.id) for run in live_runs] == live_steps
    assert code == 0, output
    events = report["events"]
    assert isinstance(events, list) and len(events) == 20
    changed = {e["event_id"] for e in events if e["changed"]}
    small_or_big = {i + 1 for i, price in enumerate(prices) if price <= 100 or price > 900}
    assert changed == small_or_big
    first = next(e for e in events if e["event_id"] == 1)
    assert [c["tool"] for c in first["live"]["calls"]] == ["jira.create_issue", "email.send"]
    assert [(c["tool"], c["status"]) for c in first["candidate"]["calls"]] == [
        ("email.send", "shadowed")
    ]
    assert "-jira.create_issue" in "\n".join(first["diff"])
    # The very big ones' summary changed: said argument by argument too.
    assert 'jira.create_issue summary: "Order #19" → "Big #19"' in output
    assert report["totals"]["changed"] == len(small_or_big)


LIVE_ISSUE = """
- name: file-order
  on: {source: shop, event: orders/create}
  actions:
    - jira.create_issue: {project: OPS, summary: "Order {{ payload.name }}"}
"""
EXPECTING = """
- name: triage
  on: {source: shop, event: orders/create}
  assistant:
    prompt: "Order {{ payload.name }}"
    tools: [jira.search, jira.create_issue]
    policy:
      jira.create_issue: {approve: true}
  expect:
    calls: [{tool: jira.create_issue, args: {project: OPS}}]
    no_calls: [email.send]
    answer_matches: "^Filed"
"""
CREATE = {
    "project": "OPS",
    "summary": "Order",
    "description": None,
    "issue_type": None,
    "labels": None,
}


def test_an_expectation_failure_exits_non_zero_naming_the_event_and_the_check(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    handlers = {"jira": {"server": url, "user": "u", "password": "p"}}
    with ScriptedModel(
        # The candidate prompt's two behaviours, one per event: files it, then only answers.
        call("jira__create_issue", CREATE),
        answer("Filed OPS-1."),
        answer("Nothing to do."),
    ) as model:
        models = {"default": {"api": "responses", "base_url": model.url, "model": "m"}}
        with live_gateway(tmp_path, LIVE_ISSUE, handlers=handlers, models=models) as gw:
            gw.post_order("e1", name="#1")
            gw.post_order("e2", name="#2")
            gw.finished_runs(2)
        issues = len(fake.issues)

        # One run at a time, so the script goes event by event.
        code, output, report = eval_cli(tmp_path, EXPECTING, "--last", "2", "--concurrency", "1")

    assert len(fake.issues) == issues
    assert code == 1, output
    failures = report["failures"]
    assert isinstance(failures, list)
    assert [(f["event_id"], f["check"]) for f in failures] == [
        (2, 'calls: jira.create_issue {"project": "OPS"}'),
        (2, "answer_matches: ^Filed"),
    ]
    assert "FAIL event 2 rule triage" in output
    first = report["events"][0]
    # Approvals are recorded as they would be asked, never waited for.
    assert first["candidate"]["runs"] == {"triage": "succeeded"}
    assert [(c["tool"], c["approval"]) for c in first["candidate"]["calls"]] == [
        ("jira.create_issue", True)
    ]
    assert report["totals"]["pass_rate"] == 0.5


SEARCHING = """
- name: triage
  on: {source: shop, event: orders/create}
  assistant:
    prompt: "Order {{ payload.name }}"
    tools: [jira.search]
"""
SEARCH = {"jql": "project = OPS", "max_results": None}


class Counting:
    """An ASGI app in front of another, counting the HTTP requests that reach it."""

    def __init__(self, app: Any) -> None:
        self.app, self.requests = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


def test_offline_eval_answers_read_only_calls_from_the_live_journal(tmp_path: Path) -> None:
    fake = Counting(FakeJira(projects=("OPS",)))
    with (
        serve_in_thread(fake) as url,
        ScriptedModel(
            call("jira__search", SEARCH),  # the live run
            answer("Nothing open."),
            call("jira__search", SEARCH),  # the candidate's, answered from the journal
            answer("Still nothing open."),
        ) as model,
    ):
        handlers = {"jira": {"server": url, "user": "u", "password": "p"}}
        models = {"default": {"api": "responses", "base_url": model.url, "model": "m"}}
        with live_gateway(tmp_path, SEARCHING, handlers=handlers, models=models) as gw:
            gw.post_order("e1", name="#1")
            gw.finished_runs(1)
        live_result = tool_step(gw.steps(1)).result
        reached = fake.requests
        assert reached > 0

        code, output, report = eval_cli(tmp_path, SEARCHING, "--last", "1", "--offline")

        assert fake.requests == reached  # the eval's jira.search reached nothing
    assert code == 0, output
    (event,) = report["events"]
    assert [(c["tool"], c["status"]) for c in event["candidate"]["calls"]] == [
        ("jira.search", "succeeded")
    ]
    assert not event["changed"]
    # The replayed call's result is the live run's, as journaled.
    assert tool_step(eval_steps(tmp_path / "eval.db", 1)).result == live_result


FILING = """
- name: triage
  on: {source: shop, event: orders/create}
  assistant:
    prompt: "Order {{ payload.name }}"
    tools: [jira.create_issue]
"""


def test_model_switches_every_candidate_assistant_to_that_profile(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    with (
        ScriptedModel(answer("Nothing to file.")) as current,
        ScriptedModel(call("jira__create_issue", CREATE), answer("Filed.")) as trying,
    ):
        handlers = {"jira": {"server": url, "user": "u", "password": "p"}}
        models = {
            "default": {"api": "responses", "base_url": current.url, "model": "m"},
            "next": {"api": "responses", "base_url": trying.url, "model": "m2"},
        }
        with live_gateway(tmp_path, FILING, handlers=handlers, models=models) as gw:
            gw.post_order("e1", name="#1")
            gw.finished_runs(1)

        code, output, report = eval_cli(tmp_path, FILING, "--model", "next")
        unknown, said, _ = eval_cli(tmp_path, FILING, "--model", "nope")

    assert code == 0, output
    (event,) = report["events"]
    assert event["changed"]
    assert [c["tool"] for c in event["candidate"]["calls"]] == ["jira.create_issue"]
    assert len(current.requests) == 1  # the live run's only
    assert fake.issues == {}
    assert unknown == 1
    assert "--model nope: no such model profile (profiles: default, next)" in said


def test_an_estimate_above_confirm_above_needs_yes_before_any_model_call(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    _, url = jira
    with ScriptedModel(answer("Nothing to file."), answer("Still nothing.")) as model:
        handlers = {"jira": {"server": url, "user": "u", "password": "p"}}
        models = priced_models(model.url)
        guard = {"confirm_above": 0.00001}
        with live_gateway(tmp_path, FILING, handlers=handlers, models=models, eval=guard) as gw:
            gw.post_order("e1", name="#1")
            (run,) = gw.finished_runs(1)
        assert run.cost > guard["confirm_above"]

        refused, said, _ = eval_cli(tmp_path, FILING)
        asked = len(model.requests)
        code, output, report = eval_cli(tmp_path, FILING, "--yes")

    assert refused == 1
    assert f"estimated model cost: ${run.cost:.6f}" in said
    assert "above eval.confirm_above" in said and "--yes" in said
    assert asked == 1  # the live run's only: the refused eval called no model
    assert code == 0, output
    assert report["totals"]["cost_candidate"] > 0


SEARCH_ACTION = """
- name: file-order
  on: {source: shop, event: orders/create}
  actions:
    - jira.search: {jql: "project = OPS"}
"""


def test_a_replayed_run_that_fails_is_not_retried(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    handlers = {"jira": {"server": url, "user": "u", "password": "p"}}
    with live_gateway(tmp_path, LIVE_ISSUE, handlers=handlers) as gw:
        gw.post_order("e1", name="#1")
        gw.finished_runs(1)
    fake.fail_next(1000, status=503, path="search")

    code, output, report = eval_cli(tmp_path, SEARCH_ACTION, "--timeout", "5")

    assert code == 0, output
    (event,) = report["events"]
    # Dead at its first failure: an eval reports what happened, it does not wait out a backoff.
    assert event["candidate"]["runs"] == {"file-order": "dead"}
