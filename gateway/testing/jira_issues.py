"""What FakeJira keeps and how it finds it: issues with their comments and workflow, their JSON
form, and the subset of JQL that searches them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

API = "/rest/api/2"
# status → (transition id, transition name); every status can be reached from every other.
WORKFLOW = {
    "To Do": ("11", "To Do"),
    "In Progress": ("21", "Start Progress"),
    "Done": ("31", "Done"),
}


@dataclass
class Comment:
    id: str
    body: str
    created: str


@dataclass
class Issue:
    id: str
    key: str
    project: str
    summary: str
    issue_type: str
    description: str | None = None
    labels: list[str] = field(default_factory=list)
    status: str = "To Do"
    comments: list[Comment] = field(default_factory=list)


class JqlError(ValueError):
    """A JQL query the fake does not understand (Jira answers 400 with the message)."""


def matching(issues: Iterable[Issue], jql: str) -> list[Issue]:
    """The issues matching `jql`: clauses on project, labels, key, status and issuetype
    with =, != and in (...), joined by AND; ORDER BY is ignored (issues keep their order).
    Anything else raises JqlError, as Jira would answer 400."""
    clauses = _parse_jql(jql)
    return [i for i in issues if all(_matches(i, c) for c in clauses)]


def issue_json(issue: Issue, base: str) -> dict[str, Any]:
    """An issue as Jira renders it, `base` being the server's URL."""
    return {
        "id": issue.id,
        "key": issue.key,
        "self": f"{base}{API}/issue/{issue.id}",
        "fields": {
            "summary": issue.summary,
            "description": issue.description,
            "labels": issue.labels,
            "issuetype": {"name": issue.issue_type},
            "project": {"key": issue.project},
            "status": {"name": issue.status},
            "comment": {
                "comments": [comment_json(c) for c in issue.comments],
                "total": len(issue.comments),
            },
        },
    }


def comment_json(comment: Comment) -> dict[str, Any]:
    return {
        "id": comment.id,
        "body": comment.body,
        "created": comment.created,
        "author": {"name": "gateway", "displayName": "Gateway"},
    }


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


_TOKEN = re.compile(
    r'\s*(?:"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|(!=|=|\(|\)|,)|([^\s=!(),"\']+))'
)
_FIELDS = {"project", "labels", "key", "issuekey", "status", "issuetype", "type"}


@dataclass
class _Clause:
    field: str
    operator: str  # "=", "!=", "in", "not in"
    values: list[str]


def _tokens(jql: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    jql = jql.strip()
    while position < len(jql):
        match = _TOKEN.match(jql, position)
        if match is None or match.end() == position:
            raise JqlError(f"Error in the JQL Query: unexpected character at position {position}.")
        position = match.end()
        double, single, symbol, word = match.groups()
        if double is not None or single is not None:
            text = double if double is not None else single
            tokens.append(("string", re.sub(r"\\(.)", r"\1", text)))
        elif symbol is not None:
            tokens.append(("symbol", symbol))
        elif word is not None:
            tokens.append(("word", word))
    return tokens


def _parse_jql(jql: str) -> list[_Clause]:
    tokens = _tokens(jql)
    for index in range(len(tokens) - 1):
        if [t[1].lower() for t in tokens[index : index + 2]] == ["order", "by"]:
            tokens = tokens[:index]
            break
    clauses: list[_Clause] = []
    position = 0

    def take() -> tuple[str, str]:
        nonlocal position
        if position >= len(tokens):
            raise JqlError("Error in the JQL Query: the query ends too early.")
        position += 1
        return tokens[position - 1]

    def value() -> str:
        kind, text = take()
        if kind == "symbol":
            raise JqlError(f"Error in the JQL Query: expected a value, found '{text}'.")
        return text

    while position < len(tokens):
        kind, name = take()
        if kind != "word":
            raise JqlError(f"Error in the JQL Query: expected a field, found '{name}'.")
        if name.lower() not in _FIELDS:
            raise JqlError(
                f"Field '{name}' does not exist or you do not have permission to view it."
            )
        _, operator = take()
        operator = operator.lower()
        if operator == "not":
            if take()[1].lower() != "in":
                raise JqlError("Error in the JQL Query: expected 'in' after 'not'.")
            operator = "not in"
        if operator in ("=", "!="):
            clauses.append(_Clause(name.lower(), operator, [value()]))
        elif operator in ("in", "not in"):
            if take() != ("symbol", "("):
                raise JqlError("Error in the JQL Query: expected '(' after 'in'.")
            values = [value()]
            while (separator := take()) == ("symbol", ","):
                values.append(value())
            if separator != ("symbol", ")"):
                raise JqlError("Error in the JQL Query: expected ')'.")
            clauses.append(_Clause(name.lower(), operator, values))
        else:
            raise JqlError(f"Error in the JQL Query: the operator '{operator}' is not supported.")
        if position < len(tokens):
            joiner = take()
            if joiner[1].lower() != "and":
                raise JqlError(f"Error in the JQL Query: expected AND, found '{joiner[1]}'.")
    return clauses


def _matches(issue: Issue, clause: _Clause) -> bool:
    wanted = {v.lower() for v in clause.values}
    if clause.field == "labels":
        hit = any(label.lower() in wanted for label in issue.labels)
    else:
        actual = {
            "project": issue.project,
            "key": issue.key,
            "issuekey": issue.key,
            "status": issue.status,
            "issuetype": issue.issue_type,
            "type": issue.issue_type,
        }[clause.field]
        hit = actual.lower() in wanted
    return hit if clause.operator in ("=", "in") else not hit
