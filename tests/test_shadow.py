"""Shadow mode: a rule runs, records what it would have done, and touches nothing outside."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.testing.fake_jira import FakeJira
from gateway.testing.fake_llm import ScriptedModel, answer, call
from gateway.testing.server import serve_in_thread
from gateway.testing.smtp import SmtpServer
from tests.fixtures import requires_fixtures
from tests.live import live_gateway

pytestmark = requires_fixtures

RULES = """
- name: shadow-actions
  mode: shadow
  on: {source: shop, event: orders/create}
  actions:
    - jira.create_issue: {project: OPS, summary: "Order {{ payload.name }}"}
    - email.send: {to: [sales@example.com], subject: "Order {{ payload.name }}", text: "new"}
- name: shadow-assistant
  mode: shadow
  on: {source: shop, event: orders/create}
  assistant:
    prompt: "Order {{ payload.name }}"
    tools: [jira.search, jira.create_issue]
"""


@pytest.fixture
def jira() -> Iterator[tuple[FakeJira, str]]:
    fake = FakeJira(projects=("OPS",))
    with serve_in_thread(fake) as url:
        yield fake, url


def test_shadow_rules_execute_no_side_effect_and_record_the_proposed_actions(
    tmp_path: Path, jira: tuple[FakeJira, str]
) -> None:
    fake, url = jira
    search = {"jql": "project = OPS", "max_results": None}
    create = {
        "project": "OPS",
        "summary": "Order #7",
        "description": None,
        "issue_type": None,
        "labels": None,
    }
    with (
        SmtpServer() as smtp,
        ScriptedModel(
            call("jira__search", search),
            call("jira__create_issue", create),
            answer("Would have filed it."),
        ) as model,
        live_gateway(
            tmp_path,
            RULES,
            models={"default": {"api": "responses", "base_url": model.url, "model": "m"}},
            handlers={
                "jira": {"server": url, "user": "u", "password": "p"},
                "email": smtp.settings(),
            },
        ) as gw,
    ):
        gw.post_order("e1", name="#7")
        runs = gw.finished_runs(2)
        steps = {run.rule: gw.steps(run.id) for run in runs}

    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert fake.issues == {}
    assert smtp.messages == []
    actions = steps["shadow-actions"]
    assert [(s.tool, s.status) for s in actions] == [
        ("jira.create_issue", "shadowed"),
        ("email.send", "shadowed"),
    ]
    assert actions[0].arguments["summary"] == "Order #7"
    tools = [(s.tool, s.status) for s in steps["shadow-assistant"] if s.kind == "tool"]
    # A read-only tool still runs (the model needs its answer); the side effect does not.
    assert tools == [("jira.search", "succeeded"), ("jira.create_issue", "shadowed")]
    assert not any(r.method == "POST" and r.path.endswith("/issue") for r in fake.requests)
