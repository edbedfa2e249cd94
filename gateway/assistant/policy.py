"""Argument policy: what an assistant may pass to a tool, checked before the tool runs.

A rule's `policy:` maps a tool to limits on its arguments and an optional approval gate:

    jira.create_issue: {project: [FIN, OPS]}           # allowed values (every element of a list)
    jira.transition: {issue: ["SUP-*"]}               # a value with * ? [...] is a glob
    jira.comment: {issue: {projects: [SUP]}}          # the project of a Jira issue key
    email.send: {to: {domains: [example.com]}}        # every address in to, cc and bcc
    http.request: {url: {hosts: [api.example.com]}}   # the URL's host
    email.send: {approve: true}                       # an operator approves each call

Values and projects match case-sensitively, domains and hosts case-insensitively; globs match
any characters. A denied call goes back to the model with the reason, so it can correct itself.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import getaddresses
from typing import Any

from gateway.issue_keys import PROJECT_KEY, project_of
from gateway.tools import Tool

# A domain rule on one of these covers the others that have no rule of their own: otherwise
# a model limited in `to` could still copy anyone in `cc`.
RECIPIENTS = ("to", "cc", "bcc")
KINDS = ("domains", "hosts", "projects")
GLOB = re.compile(r"[*?[]")


@dataclass(frozen=True)
class PolicyDecision:
    allowed: bool
    reason: str | None = None
    needs_approval: bool = False


ALLOW = PolicyDecision(allowed=True)


def check(
    tool_name: str, arguments: Mapping[str, Any], policy: Mapping[str, Any]
) -> PolicyDecision:
    """Whether the rule's policy lets this call run, and whether it must wait for approval.

    Pass validated arguments (defaults filled in), so a default value is checked too.
    """
    tool_name = tool_name.replace("__", ".")
    rules = policy.get(tool_name)
    if not rules:
        return ALLOW
    for argument, limit in _limits(rules).items():
        reason = _check_argument(tool_name, argument, arguments.get(argument), limit)
        if reason is not None:
            return PolicyDecision(allowed=False, reason=reason)
    return PolicyDecision(allowed=True, needs_approval=rules.get("approve") is True)


def validate_policy(policy: Mapping[str, Any], tools: Mapping[str, Tool]) -> list[str]:
    """Every problem in a rule's `policy:` block, for `gateway check`; [] when it is sound.

    `tools` are the tools the policy may name (usually the rule's allowlist).
    """
    problems: list[str] = []
    for tool_name, rules in policy.items():
        tool = tools.get(tool_name)
        if tool is None:
            problems.append(
                f"policy for {tool_name}: unknown tool (tools: {', '.join(sorted(tools)) or '-'})"
            )
            continue
        if not isinstance(rules, Mapping):
            problems.append(f"policy for {tool_name}: expected a mapping of argument names")
            continue
        if "approve" in rules and not isinstance(rules["approve"], bool):
            problems.append(f"policy for {tool_name}: approve must be true or false")
        fields = tool.arguments.model_fields
        # The model sees an argument by its alias (http.request's `json` is `json_body` here).
        names = set(fields) | {f.alias for f in fields.values() if f.alias}
        for argument, limit in rules.items():
            if argument == "approve":
                continue
            where = f"policy for {tool_name}, argument {argument}"
            if argument not in names:
                problems.append(
                    f"{where}: {tool_name} has no such argument (arguments: "
                    f"{', '.join(fields) or '-'})"
                )
            problems.extend(f"{where}: {p}" for p in _limit_problems(limit))
    return problems


def _limits(rules: Mapping[str, Any]) -> dict[str, Any]:
    limits = {k: v for k, v in rules.items() if k != "approve"}
    for name in RECIPIENTS:
        if isinstance(limits.get(name), Mapping) and "domains" in limits[name]:
            for other in RECIPIENTS:
                limits.setdefault(other, limits[name])
    return limits


def _limit_problems(limit: Any) -> list[str]:
    if isinstance(limit, Mapping):
        kinds = [k for k in limit if k in KINDS]
        unknown = [str(k) for k in limit if k not in KINDS]
        if unknown or len(kinds) != 1:
            return [
                "expected a list of values, {domains: [...]}, {hosts: [...]} or "
                f"{{projects: [...]}}, got {limit}"
            ]
        names = limit[kinds[0]]
        if kinds[0] == "projects":
            if not isinstance(names, list) or not names:
                return ["projects must be a non-empty list of project keys"]
            return [
                f"{name!r} is not a Jira project key (upper-case letters, digits, _)"
                for name in names
                if not isinstance(name, str) or not re.fullmatch(PROJECT_KEY, name)
            ]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            return [f"{kinds[0]} must be a non-empty list of names"]
        return []
    if isinstance(limit, list) and not limit:
        return ["an empty list allows no value at all"]
    return []


def _check_argument(tool: str, argument: str, value: Any, limit: Any) -> str | None:
    if value is None:
        return None
    if isinstance(limit, Mapping) and "domains" in limit:
        return _check_domains(tool, argument, value, limit["domains"])
    if isinstance(limit, Mapping) and "hosts" in limit:
        return _check_hosts(tool, argument, value, limit["hosts"])
    if isinstance(limit, Mapping) and "projects" in limit:
        return _check_projects(tool, argument, value, limit["projects"])
    allowed = limit if isinstance(limit, list) else [limit]
    for element in value if isinstance(value, list | tuple) else [value]:
        if not _one_of(element, allowed):
            return (
                f"{argument} {element!r} is not allowed for {tool}; "
                f"allowed: {', '.join(str(a) for a in allowed)}"
            )
    return None


def _one_of(value: Any, allowed: list[Any]) -> bool:
    # YAML reads `priority: [1, 2]` as numbers while the model may send "1".
    text = str(value)
    return value in allowed or any(
        text == str(a) or (isinstance(a, str) and GLOB.search(a) and fnmatch.fnmatchcase(text, a))
        for a in allowed
    )


def _check_domains(tool: str, argument: str, value: Any, domains: list[str]) -> str | None:
    allowed = ", ".join(domains)
    texts = [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    for name, address in getaddresses(texts):
        domain = address.rpartition("@")[2] if "@" in address else ""
        if not domain or not address.partition("@")[0]:
            shown = address or name
            return f"{argument}: {shown!r} is not an email address ({tool})"
        if not _matches(domain, domains):
            return (
                f"recipient {address!r} in {argument} is not allowed for {tool}; "
                f"allowed domains: {allowed}"
            )
    return None


def _check_hosts(tool: str, argument: str, value: Any, hosts: list[str]) -> str | None:
    allowed = ", ".join(hosts)
    for url in value if isinstance(value, list | tuple) else [value]:
        text = str(url)
        # Parsers disagree on these (is `a\@b` host a or b?): refuse rather than guess.
        if "\\" in text or any(c.isspace() or ord(c) < 32 for c in text):
            return f"{argument} {text!r} is not a plain URL ({tool})"
        import httpx2  # the parser the http tool sends with; imported by a host check only

        try:
            host = httpx2.URL(text).host
        except Exception:
            host = ""
        if not host:
            return f"{argument} {text!r} is not an absolute URL ({tool})"
        if not _matches(host, hosts):
            return f"host {host!r} is not allowed for {tool}; allowed hosts: {allowed}"
    return None


def _check_projects(tool: str, argument: str, value: Any, projects: list[str]) -> str | None:
    for element in value if isinstance(value, list | tuple) else [value]:
        project = project_of(str(element))
        if project is None:
            return f"{argument} {element!r} is not a Jira issue or project key ({tool})"
        if project not in projects:
            return (
                f"{argument} {element!r} is not in a project allowed for {tool}; "
                f"allowed projects: {', '.join(projects)}"
            )
    return None


def _matches(name: str, patterns: Iterable[str]) -> bool:
    name = name.lower().rstrip(".")
    return any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in patterns)
