"""The argument policy a rule puts on an assistant's tool calls."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ConfigDict, create_model

from gateway.assistant.policy import PolicyDecision, check, validate_policy
from gateway.tools import Tool, ToolContext

POLICY: dict[str, dict[str, Any]] = {
    "jira.create_issue": {"project": ["FIN", "OPS"], "labels": ["payments", "triage"]},
    "email.send": {"to": {"domains": ["example.com", "*.example.org"]}},
    "http.request": {"url": {"hosts": ["api.example.com"]}},
    "slack.post": {"channel": ["#finance"], "approve": True},
}


def test_a_tool_without_policy_is_allowed() -> None:
    assert check("jira.search", {"jql": "project = HR"}, POLICY) == PolicyDecision(allowed=True)


def test_an_allowed_project_passes() -> None:
    decision = check("jira.create_issue", {"project": "FIN", "summary": "x"}, POLICY)

    assert decision == PolicyDecision(allowed=True, reason=None, needs_approval=False)


def test_a_project_outside_the_allowlist_is_refused_with_a_reason_the_model_can_use() -> None:
    decision = check("jira.create_issue", {"project": "HR", "summary": "x"}, POLICY)

    assert not decision.allowed
    assert decision.reason == "project 'HR' is not allowed for jira.create_issue; allowed: FIN, OPS"
    assert not decision.needs_approval


def test_the_wire_name_of_a_tool_finds_its_policy() -> None:
    assert not check("jira__create_issue", {"project": "HR"}, POLICY).allowed


def test_every_element_of_a_list_argument_must_be_allowed() -> None:
    allowed = check("jira.create_issue", {"project": "FIN", "labels": ["payments"]}, POLICY)
    refused = check(
        "jira.create_issue", {"project": "FIN", "labels": ["payments", "secret"]}, POLICY
    )

    assert allowed.allowed
    assert not refused.allowed
    assert refused.reason is not None and "labels 'secret'" in refused.reason


def test_an_unset_argument_is_not_checked() -> None:
    assert check("jira.create_issue", {"project": "OPS", "labels": None}, POLICY).allowed


def test_a_single_allowed_value_may_be_written_without_a_list() -> None:
    assert not check(
        "jira.create_issue", {"project": "HR"}, {"jira.create_issue": {"project": "FIN"}}
    ).allowed
    assert check(
        "jira.create_issue", {"project": "FIN"}, {"jira.create_issue": {"project": "FIN"}}
    ).allowed


def test_numbers_in_yaml_match_numbers_sent_as_text() -> None:
    policy = {"jira.create_issue": {"priority": [1, 2]}}

    assert check("jira.create_issue", {"priority": "2"}, policy).allowed
    assert not check("jira.create_issue", {"priority": 3}, policy).allowed


@pytest.mark.parametrize(
    "to",
    [
        "ops@example.com",
        "Ops Team <ops@Example.COM>",
        ["a@example.com", "b@eu.example.org"],
        "a@example.com, b@example.com",
    ],
)
def test_recipients_in_allowed_domains_pass(to: Any) -> None:
    assert check("email.send", {"to": to, "subject": "s", "body": "b"}, POLICY).allowed


@pytest.mark.parametrize(
    "to",
    [
        "someone@gmail.com",
        ["a@example.com", "leak@evil.com"],
        "a@example.com, leak@evil.com",
        "ops@example.com.evil.com",
        "ops@example.org",  # the glob covers subdomains only
    ],
)
def test_a_recipient_outside_the_allowed_domains_is_refused(to: Any) -> None:
    decision = check("email.send", {"to": to}, POLICY)

    assert not decision.allowed
    assert decision.reason is not None
    assert "is not allowed for email.send; allowed domains: example.com, *.example.org" in (
        decision.reason
    )


def test_a_domain_rule_on_to_also_covers_cc_and_bcc() -> None:
    cc = check("email.send", {"to": "a@example.com", "cc": ["spy@evil.com"]}, POLICY)
    bcc = check("email.send", {"to": "a@example.com", "bcc": "spy@evil.com"}, POLICY)

    assert not cc.allowed
    assert cc.reason == (
        "recipient 'spy@evil.com' in cc is not allowed for email.send; "
        "allowed domains: example.com, *.example.org"
    )
    assert not bcc.allowed


def test_cc_keeps_its_own_rule_when_it_has_one() -> None:
    policy = {
        "email.send": {"to": {"domains": ["example.com"]}, "cc": {"domains": ["partner.com"]}}
    }

    assert check("email.send", {"to": "a@example.com", "cc": "b@partner.com"}, policy).allowed
    assert not check("email.send", {"to": "a@partner.com"}, policy).allowed


def test_something_that_is_not_an_address_is_refused() -> None:
    decision = check("email.send", {"to": "not an address"}, POLICY)

    assert not decision.allowed
    assert decision.reason is not None and "is not an email address" in decision.reason


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.example.com/v1/orders", True),
        ("https://API.example.com:8443/x", True),
        ("https://evil.com/?next=https://api.example.com", False),
        ("https://api.example.com@evil.com/", False),
        ("https://api.example.com.evil.com/", False),
        ("http://evil.com\\@api.example.com/", False),
        ("api.example.com/v1", False),
    ],
)
def test_a_url_must_point_at_an_allowed_host(url: str, allowed: bool) -> None:
    assert check("http.request", {"method": "GET", "url": url}, POLICY).allowed is allowed


def test_the_host_refusal_names_the_host() -> None:
    decision = check("http.request", {"url": "https://evil.com/x"}, POLICY)

    assert decision.reason == (
        "host 'evil.com' is not allowed for http.request; allowed hosts: api.example.com"
    )


def test_approve_marks_an_allowed_call_for_approval() -> None:
    decision = check("slack.post", {"channel": "#finance", "text": "hi"}, POLICY)

    assert decision == PolicyDecision(allowed=True, needs_approval=True)


def test_a_refused_call_is_not_offered_for_approval() -> None:
    decision = check("slack.post", {"channel": "#general", "text": "hi"}, POLICY)

    assert not decision.allowed
    assert not decision.needs_approval


def test_approve_alone_is_a_policy() -> None:
    assert check("email.send", {"to": "x@y.z"}, {"email.send": {"approve": True}}).needs_approval


def _tool(name: str, **fields: Any) -> Tool:
    async def function(context: ToolContext, **arguments: Any) -> None:
        return None

    model = create_model(
        name.title().replace(".", ""), __config__=ConfigDict(extra="forbid"), **fields
    )
    return Tool(name, function, name, model, side_effects=True)


TOOLS = {
    "jira.create_issue": _tool("jira.create_issue", project=(str, ...), summary=(str, ...)),
    "email.send": _tool("email.send", to=(list[str], ...), cc=(list[str] | None, None)),
}


def test_a_sound_policy_has_no_problems() -> None:
    policy = {
        "jira.create_issue": {"project": ["FIN"], "approve": True},
        "email.send": {"to": {"domains": ["example.com"]}},
    }

    assert validate_policy(policy, TOOLS) == []


def test_validate_policy_names_unknown_tools_and_arguments() -> None:
    policy = {
        "jira.create_isue": {"project": ["FIN"]},
        "email.send": {"recipients": {"domains": ["example.com"]}},
    }

    assert validate_policy(policy, TOOLS) == [
        "policy for jira.create_isue: unknown tool (tools: email.send, jira.create_issue)",
        "policy for email.send, argument recipients: email.send has no such argument "
        "(arguments: to, cc)",
    ]


def test_validate_policy_names_malformed_limits() -> None:
    policy = {
        "jira.create_issue": {"project": [], "summary": {"domain": ["x"]}, "approve": "yes"},
        "email.send": {"to": {"domains": "example.com"}},
    }

    problems = validate_policy(policy, TOOLS)

    assert problems == [
        "policy for jira.create_issue: approve must be true or false",
        "policy for jira.create_issue, argument project: an empty list allows no value at all",
        "policy for jira.create_issue, argument summary: expected a list of values, "
        "{domains: [...]}, {hosts: [...]} or {projects: [...]}, got {'domain': ['x']}",
        "policy for email.send, argument to: domains must be a non-empty list of names",
    ]
