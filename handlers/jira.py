"""Jira tools: create issues, comment, search and transition, through the `jira` client.

The client blocks, so each call runs in a thread; it never retries by itself, the worker does.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from jira import JIRA, JIRAError
from pydantic import Field

from gateway.issue_keys import ISSUE_KEY, PROJECT_KEY
from gateway.tools import PermanentToolError, ToolContext, ToolError, tool
from handlers.http import parse_retry_after

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
SEARCH_FIELDS = ("summary", "status", "labels", "issuetype")

IssueKey = Annotated[str, Field(pattern=ISSUE_KEY, description="Issue key, e.g. OPS-123")]
ProjectKey = Annotated[str, Field(pattern=PROJECT_KEY, description="Project key, e.g. OPS")]


@tool("jira.create_issue")
async def create_issue(
    context: ToolContext,
    project: ProjectKey,
    summary: Annotated[str, Field(description="One-line title of the issue")],
    description: Annotated[str | None, Field(description="Body, in Jira wiki markup")] = None,
    issue_type: Annotated[str, Field(description="Issue type name: Task, Bug, Story...")] = "Task",
    labels: Annotated[list[str] | None, Field(description="Labels (no spaces)")] = None,
) -> dict[str, Any]:
    """Create a Jira issue; returns its key, id and URL."""
    # The label ties the issue to this step, so `recover` can find it after a lost response.
    fields: dict[str, Any] = {
        "project": {"key": project},
        "summary": summary,
        "issuetype": {"name": issue_type},
        "labels": [*(labels or []), _label(context.key)],
    }
    if description:
        fields["description"] = description

    def create(client: JIRA) -> dict[str, Any]:
        created = client.create_issue(fields=fields, prefetch=False)
        return _issue_link(context.settings, created.raw["key"], created.raw["id"])

    return await _run(context.settings, create)


@create_issue.recover
async def _find_created_issue(context: ToolContext, arguments: dict[str, Any]) -> Any | None:
    """The issue an earlier attempt created, found by its `gw-<hash>` label.

    On Jira Cloud search is eventually consistent: an issue created a moment ago may not be
    found yet, so the worker's retry delay matters there.
    """
    jql = f"project = {_quote(arguments['project'])} AND labels = {_quote(_label(context.key))}"

    def find(client: JIRA) -> dict[str, Any] | None:
        issues = _search(client, jql, 1)["issues"]
        if not issues:
            return None
        return _issue_link(context.settings, issues[0]["key"], issues[0]["id"])

    return await _run(context.settings, find)


@tool("jira.comment")
async def comment(
    context: ToolContext,
    issue: IssueKey,
    body: Annotated[str, Field(description="Comment text, in Jira wiki markup")],
) -> dict[str, Any]:
    """Add a comment to a Jira issue."""
    # The trailing marker lets `recover` recognise this step's comment after a lost response.
    text = f"{body}\n\n{_comment_marker(context.key)}"

    def add(client: JIRA) -> dict[str, Any]:
        added = client.add_comment(issue, text)
        return _comment_link(context.settings, issue, str(added.raw["id"]))

    return await _run(context.settings, add)


@comment.recover
async def _find_comment(context: ToolContext, arguments: dict[str, Any]) -> Any | None:
    """The comment an earlier attempt added, found by its `[gw:<hash>]` marker."""
    marker = _comment_marker(context.key)
    issue = arguments["issue"]

    def find(client: JIRA) -> dict[str, Any] | None:
        for existing in client.comments(issue):
            if marker in (existing.raw.get("body") or ""):
                return _comment_link(context.settings, issue, str(existing.raw["id"]))
        return None

    return await _run(context.settings, find)


@tool("jira.search", side_effects=False)
async def search(
    context: ToolContext,
    jql: Annotated[str, Field(description='JQL, e.g. project = OPS AND labels = "deploy"')],
    max_results: Annotated[int, Field(ge=1, le=100, description="Most issues to return")] = 20,
) -> dict[str, Any]:
    """Search Jira issues with JQL; returns key, summary, status and labels of each."""

    def find(client: JIRA) -> dict[str, Any]:
        return _search(client, jql, max_results)

    found = await _run(context.settings, find)
    for issue in found["issues"]:
        issue["url"] = _browse_url(context.settings, issue["key"])
    return found


@tool("jira.transition")
async def transition(
    context: ToolContext,
    issue: IssueKey,
    transition: Annotated[
        str, Field(description="Transition name as on the issue's buttons (e.g. Done), or its id")
    ],
) -> dict[str, Any]:
    """Move a Jira issue through its workflow; returns the status it ends in."""

    def move(client: JIRA) -> dict[str, Any]:
        available = client.transitions(issue)
        chosen = _pick_transition(available, transition)
        if chosen is None:
            names = ", ".join(repr(t["name"]) for t in available) or "none"
            raise PermanentToolError(
                f"issue {issue} has no transition {transition!r} from its status "
                f"(available: {names})"
            )
        client.transition_issue(issue, str(chosen["id"]))
        return {"issue": issue, "transition": chosen["name"], "status": _target(chosen)}

    return await _run(context.settings, move)


@transition.recover
async def _already_transitioned(context: ToolContext, arguments: dict[str, Any]) -> Any | None:
    """An earlier attempt is taken to have happened if the issue sits in the target status."""
    issue, wanted = arguments["issue"], arguments["transition"]

    def check(client: JIRA) -> dict[str, Any] | None:
        status = client.issue(issue, fields="status").raw["fields"]["status"]["name"]
        chosen = _pick_transition(client.transitions(issue), wanted)
        target = _target(chosen) if chosen is not None else wanted
        if target is not None and status.lower() == target.lower():
            return {"issue": issue, "transition": wanted, "status": status}
        return None

    return await _run(context.settings, check)


def is_cloud(settings: dict[str, Any]) -> bool:
    """`deployment: cloud|server|auto`; auto means Cloud when the host is *.atlassian.net."""
    deployment = str(settings.get("deployment", "auto")).lower()
    if deployment == "cloud":
        return True
    if deployment in ("server", "datacenter", "data-center"):
        return False
    if deployment != "auto":
        raise PermanentToolError(
            f"handlers.jira.deployment must be cloud, server or auto, not {deployment!r}"
        )
    host = (urlsplit(_server(settings)).hostname or "").lower()
    return host == "atlassian.net" or host.endswith(".atlassian.net")


def _connect(settings: dict[str, Any]) -> JIRA:
    """A client for `handlers.jira`: {server, email, token} (Cloud), {server, user, password}
    or {server, token} (a Server/DC personal access token)."""
    user = settings.get("email") or settings.get("user")
    secret = settings.get("token") if settings.get("email") else settings.get("password")
    basic_auth = (str(user), str(secret)) if user and secret else None
    token_auth = None if basic_auth else settings.get("token")
    client = JIRA(
        server=_server(settings),
        basic_auth=basic_auth,
        token_auth=token_auth,
        # We decide Cloud vs Server from the settings, which saves a serverInfo round trip.
        get_server_info=False,
        max_retries=0,
        timeout=float(settings.get("timeout", DEFAULT_TIMEOUT)),
    )
    # The client picks /search/jql (Cloud) or /search (Server/DC) from this attribute.
    client.deploymentType = "Cloud" if is_cloud(settings) else "Server"
    return client


async def _run(settings: dict[str, Any], operation: Callable[[JIRA], T]) -> T:
    """Run `operation` with a fresh client in a thread; Jira's failures become ToolErrors."""

    def call() -> T:
        client = _connect(settings)
        try:
            return operation(client)
        finally:
            client.close()  # type: ignore[no-untyped-call]

    try:
        return await asyncio.to_thread(call)
    except JIRAError as error:
        raise _tool_error(error) from error
    except OSError as error:
        # requests' exceptions (connection refused, timeout, truncated or garbled response)
        # are OSErrors; the outcome of a write is then unknown, so `recover` decides.
        raise ToolError(f"Jira did not answer: {error}") from error


def _tool_error(error: JIRAError) -> ToolError:
    status = error.status_code
    detail = error.text or "no detail"
    if status is None:
        return PermanentToolError(f"Jira: {detail}")
    if status in (408, 429) or status >= 500:
        headers = error.response.headers if error.response is not None else {}
        return ToolError(
            f"Jira is unavailable (HTTP {status}): {detail}",
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )
    if status < 400:
        return ToolError(f"Jira answered HTTP {status} without the expected content")
    return PermanentToolError(f"Jira refused the request (HTTP {status}): {detail}")


def _search(client: JIRA, jql: str, limit: int) -> dict[str, Any]:
    # On Cloud the client sends this to /rest/api/2/search/jql (token paging, no total).
    raw: dict[str, Any] = client.search_issues(
        jql, maxResults=limit, fields=list(SEARCH_FIELDS), json_result=True
    )
    issues = [_summary(issue) for issue in raw.get("issues", [])]
    if "nextPageToken" in raw or "isLast" in raw:
        more = bool(raw.get("nextPageToken")) and not raw.get("isLast", False)
    else:
        more = int(raw.get("total", 0)) > int(raw.get("startAt", 0)) + len(issues)
    return {"count": len(issues), "more": more, "issues": issues}


def _summary(issue: dict[str, Any]) -> dict[str, Any]:
    fields = issue.get("fields") or {}
    return {
        "key": issue["key"],
        "id": str(issue["id"]),
        "summary": fields.get("summary"),
        "status": (fields.get("status") or {}).get("name"),
        "type": (fields.get("issuetype") or {}).get("name"),
        "labels": fields.get("labels") or [],
    }


def _pick_transition(available: list[dict[str, Any]], wanted: str) -> dict[str, Any] | None:
    for candidate in available:
        if str(candidate["id"]) == wanted or candidate["name"].lower() == wanted.lower():
            return candidate
    return None


def _target(transition: dict[str, Any]) -> str | None:
    target = (transition.get("to") or {}).get("name")
    return str(target) if target is not None else None


def _server(settings: dict[str, Any]) -> str:
    server = settings.get("server")
    if not server:
        raise PermanentToolError("handlers.jira.server is not set")
    return str(server).rstrip("/")


def _browse_url(settings: dict[str, Any], key: str) -> str:
    return f"{_server(settings)}/browse/{key}"


def _issue_link(settings: dict[str, Any], key: str, issue_id: str) -> dict[str, Any]:
    return {"key": key, "id": str(issue_id), "url": _browse_url(settings, key)}


def _comment_link(settings: dict[str, Any], issue: str, comment_id: str) -> dict[str, Any]:
    url = f"{_browse_url(settings, issue)}?focusedCommentId={comment_id}"
    return {"issue": issue, "id": comment_id, "url": url}


def _mark(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _label(key: str) -> str:
    return f"gw-{_mark(key)}"


def _comment_marker(key: str) -> str:
    return f"[gw:{_mark(key)}]"


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
