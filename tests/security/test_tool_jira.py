"""Item 8: Jira issue and project keys are validated before any request, and a policy can say
"only in project SUP" (a glob over keys, or the project of a key).

The tools run through the real `jira` client against FakeJira on loopback, which records every
request it gets, whatever its path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.assistant.policy import check, validate_policy
from gateway.errors import ConfigError
from gateway.rules.loader import load as load_rules
from gateway.store import Run
from gateway.store import Step as StoredStep
from gateway.testing.fake_jira import FakeJira
from gateway.testing.fake_llm import ScriptedModel, Step, answer, call
from gateway.testing.server import serve_in_thread
from gateway.tools import TOOLS
from tests import calls
from tests.fixtures import requires_fixtures
from tests.live import live_gateway

TRAVERSAL = "OPS-1/../../../../rest/auth/1/session#"
BAD_KEYS = [
    TRAVERSAL,
    "OPS-1/comment",
    "OPS-1?expand=x",
    "OPS-1#",
    "../OPS-1",
    "ops-1",
    "OPS-",
    "OPS-1 ",
    "OPS-1\n",
    "OPS-1%2F..",
    "1OPS-1",
    "OPS-\u0661",  # an Arabic-Indic digit, which \\d would take
    "",
]


@pytest.fixture
def fake() -> FakeJira:
    return FakeJira(projects=("OPS", "SUP"))


@pytest.fixture
def settings(fake: FakeJira) -> Iterator[dict[str, Any]]:
    with serve_in_thread(fake) as url:
        yield {"server": url, "email": "gateway@example.com", "token": "t", "timeout": 5}


async def call_tool(name: str, settings: dict[str, Any], **arguments: Any) -> Any:
    return await calls.call_tool(name, settings, arguments)


def assistant_run(
    tmp_path: Path, settings: dict[str, Any], policy: str, *script: Step
) -> tuple[Run, list[StoredStep]]:
    """One Shopify order through an assistant allowed `jira.comment`, the model scripted."""
    rules = (
        "- name: triage\n"
        "  on: {source: shop, event: orders/create}\n"
        "  assistant:\n"
        "    prompt: 'Order {{ payload.name }}'\n"
        "    tools: [jira.comment]\n"
        f"    policy: {policy}\n"
    )
    with ScriptedModel(*script) as model:
        models = {"default": {"api": "responses", "base_url": model.url, "model": "m"}}
        with live_gateway(tmp_path, rules, handlers={"jira": settings}, models=models) as gw:
            gw.post_order("e1")
            [run] = gw.finished_runs(1)
            return run, gw.steps(run.id)


# -- issue keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "others"),
    [("jira.comment", {"body": "hello"}), ("jira.transition", {"transition": "Done"})],
)
@pytest.mark.parametrize("issue", BAD_KEYS)
async def test_a_malformed_issue_key_sends_no_request(
    fake: FakeJira, settings: dict[str, Any], tool: str, others: dict[str, str], issue: str
) -> None:
    with pytest.raises(ValidationError, match="issue"):
        await call_tool(tool, settings, issue=issue, **others)

    assert fake.requests == []


@pytest.mark.parametrize("project", ["OPS/../../x", "ops", "OPS-1", "1OPS", "OPS ", ""])
async def test_an_issue_in_a_malformed_project_key_sends_no_request(
    fake: FakeJira, settings: dict[str, Any], project: str
) -> None:
    with pytest.raises(ValidationError, match="project"):
        await call_tool("jira.create_issue", settings, project=project, summary="x")

    assert fake.requests == []


async def test_a_well_formed_key_with_underscore_and_digits_is_accepted(
    fake: FakeJira, settings: dict[str, Any]
) -> None:
    fake.projects.add("OPS_2")
    created = await call_tool("jira.create_issue", settings, project="OPS_2", summary="x")

    commented = await call_tool("jira.comment", settings, issue=created["key"], body="hello")

    assert commented["issue"] == "OPS_2-1"
    assert [c.body.split("\n")[0] for c in fake.issues["OPS_2-1"].comments] == ["hello"]


@pytest.mark.parametrize(
    ("tool", "argument"),
    [
        ("jira.comment", "issue"),
        ("jira.transition", "issue"),
        ("jira.create_issue", "project"),
    ],
)
def test_the_schema_the_model_sees_carries_the_key_pattern(tool: str, argument: str) -> None:
    definition = TOOLS[tool].definition()

    pattern = definition["parameters"]["properties"][argument]["pattern"]
    assert pattern in (r"^[A-Z][A-Z0-9_]*-[0-9]+$", r"^[A-Z][A-Z0-9_]*$")
    assert definition["strict"] is True


def test_gateway_check_refuses_a_literal_malformed_issue_key(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(
        "- name: comment\n"
        "  on: {source: shop, event: orders/create}\n"
        "  actions:\n"
        f"    - jira.comment: {{issue: '{TRAVERSAL}', body: hi}}\n"
    )

    with pytest.raises(ConfigError) as refused:
        load_rules(tmp_path)

    [problem] = refused.value.problems
    assert "actions.0.jira.comment.issue" in problem
    assert "pattern" in problem


@requires_fixtures
def test_an_issue_key_from_the_payload_fails_the_run_before_any_jira_request(
    tmp_path: Path, fake: FakeJira, settings: dict[str, Any]
) -> None:
    rules = (
        "- name: comment-on-order\n"
        "  on: {source: shop, event: orders/create}\n"
        "  actions:\n"
        "    - jira.comment: {issue: '{{ payload.note }}', body: 'order {{ payload.name }}'}\n"
    )
    with live_gateway(tmp_path, rules, handlers={"jira": settings}) as gw:
        gw.post_order("e1", note=TRAVERSAL)
        [run] = gw.finished_runs(1)
        [step] = gw.steps(run.id)

    assert (run.status, step.status) == ("failed", "failed")
    assert "issue" in (step.error or "")
    assert fake.requests == []


@requires_fixtures
def test_an_assistant_comment_on_a_traversal_key_goes_back_as_invalid(
    tmp_path: Path, fake: FakeJira, settings: dict[str, Any]
) -> None:
    run, steps = assistant_run(
        tmp_path,
        settings,
        "{}",
        call("jira__comment", {"issue": TRAVERSAL, "body": "hi"}),
        answer("Could not comment."),
    )

    assert run.status == "succeeded"
    assert [s.status for s in steps if s.kind == "tool"] == ["invalid"]
    assert fake.requests == []


# -- policies: only in project SUP -----------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "issue", "allowed"),
    [
        (["SUP-*"], "SUP-12", True),
        (["SUP-*"], "SUPPORT-12", False),
        (["SUP-*"], "OPS-12", False),
        (["SUP-1?"], "SUP-12", True),
        (["SUP-1?"], "SUP-123", False),
        ({"projects": ["SUP"]}, "SUP-12", True),
        ({"projects": ["SUP", "OPS"]}, "OPS-7", True),
        ({"projects": ["SUP"]}, "SUPPORT-12", False),
        ({"projects": ["SUP"]}, "OPS-12", False),
    ],
)
def test_a_comment_policy_limits_the_issue_to_a_project(
    limit: Any, issue: str, allowed: bool
) -> None:
    policy = {"jira.comment": {"issue": limit}}

    decision = check("jira.comment", {"issue": issue, "body": "x"}, policy)

    assert decision.allowed is allowed
    if not allowed:
        assert decision.reason is not None and repr(issue) in decision.reason


@pytest.mark.parametrize(("project", "allowed"), [("SUP", True), ("OPS", False)])
def test_a_projects_limit_on_a_project_argument_names_the_project_itself(
    project: str, allowed: bool
) -> None:
    policy = {"jira.create_issue": {"project": {"projects": ["SUP"]}}}

    assert check("jira.create_issue", {"project": project}, policy).allowed is allowed


def test_a_projects_limit_is_a_sound_policy() -> None:
    policy = {
        "jira.comment": {"issue": {"projects": ["SUP"]}},
        "jira.transition": {"issue": ["SUP-*"]},
    }

    assert validate_policy(policy, TOOLS) == []


@pytest.mark.parametrize(
    ("limit", "problem"),
    [
        ({"projects": []}, "projects must be a non-empty list of project keys"),
        ({"projects": "SUP"}, "projects must be a non-empty list of project keys"),
        ({"projects": ["sup"]}, "'sup' is not a Jira project key"),
        ({"projects": ["SUP-1"]}, "'SUP-1' is not a Jira project key"),
        ({"projects": ["SUP"], "hosts": ["x"]}, "expected a list of values"),
    ],
)
def test_gateway_check_refuses_a_malformed_projects_limit(limit: Any, problem: str) -> None:
    [found] = validate_policy({"jira.comment": {"issue": limit}}, TOOLS)

    assert found.startswith("policy for jira.comment, argument issue: ")
    assert problem in found


@requires_fixtures
def test_an_assistant_limited_to_sup_comments_there_and_is_refused_elsewhere(
    tmp_path: Path, fake: FakeJira, settings: dict[str, Any]
) -> None:
    for project in ("OPS", "SUP"):
        asyncio.run(call_tool("jira.create_issue", settings, project=project, summary="x"))
    created = len(fake.requests)

    run, steps = assistant_run(
        tmp_path,
        settings,
        "{jira.comment: {issue: {projects: [SUP]}}}",
        call("jira__comment", {"issue": "OPS-1", "body": "not here"}),
        call("jira__comment", {"issue": "SUP-1", "body": "here"}),
        answer("Done."),
    )

    assert run.status == "succeeded"
    assert [s.status for s in steps if s.kind == "tool"] == ["refused", "succeeded"]
    assert fake.issues["OPS-1"].comments == []
    assert [c.body.split("\n")[0] for c in fake.issues["SUP-1"].comments] == ["here"]
    assert all("OPS-1" not in r.path for r in fake.requests[created:])
