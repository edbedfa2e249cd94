"""Jira tools: create issues, comment, search and transition, through the `jira` client.

One client per gateway, shared by every call; it blocks, so each call runs in a thread. It never
retries by itself, the worker does.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.backoff import parse_retry_after
from gateway.issue_keys import ISSUE_KEY, PROJECT_KEY
from gateway.tools import Family, PermanentToolError, ToolContext, ToolError

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
SEARCH_FIELDS = ("summary", "status", "labels", "issuetype")


class JiraSettings(BaseModel):
    """`handlers.jira`: {server, email, token} (Cloud), {server, user, password} or {server,
    token} (a Server/DC personal access token). A missing `server` fails the first call."""

    model_config = ConfigDict(extra="forbid")

    server: str | None = None
    email: str | None = None
    user: str | None = None
    token: str | None = None
    password: str | None = None
    # cloud, server (datacenter, data-center) or auto: Cloud when the host is *.atlassian.net.
    deployment: Literal["cloud", "server", "datacenter", "data-center", "auto"] = "auto"
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)

    @field_validator("deployment", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


@asynccontextmanager
async def connect(settings: JiraSettings) -> AsyncIterator[JIRA]:
    """The family's client, shared by its calls; closed when the gateway stops."""
    client = _connect(settings)
    try:
        yield client
    finally:
        await asyncio.to_thread(client.close)


family = Family("jira", JiraSettings, client=connect)
# The `jira` client (and `requests` under it) is imported by the first call, not by every
# gateway that loads the built-in tools: tens of MB resident (docs/benchmarks.md, memory).
# The tool schemas read the context's annotation at run time, where the client type is Any.
if TYPE_CHECKING:
    from jira import JIRA, JIRAError

    JiraContext = ToolContext[JiraSettings, JIRA]
else:
    JiraContext = ToolContext[JiraSettings, Any]

IssueKey = Annotated[str, Field(pattern=ISSUE_KEY, description="Issue key, e.g. OPS-123")]
ProjectKey = Annotated[str, Field(pattern=PROJECT_KEY, description="Project key, e.g. OPS")]


@family.tool("jira.create_issue")
async def create_issue(
    context: JiraContext,
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

    return await _run(context, create)


@create_issue.recover
async def _find_created_issue(context: JiraContext, arguments: dict[str, Any]) -> Any | None:
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

    return await _run(context, find)


@family.tool("jira.comment")
async def comment(
    context: JiraContext,
    issue: IssueKey,
    body: Annotated[str, Field(description="Comment text, in Jira wiki markup")],
) -> dict[str, Any]:
    """Add a comment to a Jira issue."""
    # The trailing marker lets `recover` recognise this step's comment after a lost response.
    text = f"{body}\n\n{_comment_marker(context.key)}"

    def add(client: JIRA) -> dict[str, Any]:
        added = client.add_comment(issue, text)
        return _comment_link(context.settings, issue, str(added.raw["id"]))

    return await _run(context, add)


@comment.recover
async def _find_comment(context: JiraContext, arguments: dict[str, Any]) -> Any | None:
    """The comment an earlier attempt added, found by its `[gw:<hash>]` marker."""
    marker = _comment_marker(context.key)
    issue = arguments["issue"]

    def find(client: JIRA) -> dict[str, Any] | None:
        for existing in client.comments(issue):
            if marker in (existing.raw.get("body") or ""):
                return _comment_link(context.settings, issue, str(existing.raw["id"]))
        return None

    return await _run(context, find)


@family.tool("jira.search", side_effects=False)
async def search(
    context: JiraContext,
    jql: Annotated[str, Field(description='JQL, e.g. project = OPS AND labels = "deploy"')],
    max_results: Annotated[int, Field(ge=1, le=100, description="Most issues to return")] = 20,
) -> dict[str, Any]:
    """Search Jira issues with JQL; returns key, summary, status and labels of each."""

    def find(client: JIRA) -> dict[str, Any]:
        return _search(client, jql, max_results)

    found = await _run(context, find)
    for issue in found["issues"]:
        issue["url"] = _browse_url(context.settings, issue["key"])
    return found


@family.tool("jira.transition")
async def transition(
    context: JiraContext,
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

    return await _run(context, move)


@transition.recover
async def _already_transitioned(context: JiraContext, arguments: dict[str, Any]) -> Any | None:
    """An earlier attempt is taken to have happened if the issue sits in the target status."""
    issue, wanted = arguments["issue"], arguments["transition"]

    def check(client: JIRA) -> dict[str, Any] | None:
        status = client.issue(issue, fields="status").raw["fields"]["status"]["name"]
        chosen = _pick_transition(client.transitions(issue), wanted)
        target = _target(chosen) if chosen is not None else wanted
        if target is not None and status.lower() == target.lower():
            return {"issue": issue, "transition": wanted, "status": status}
        return None

    return await _run(context, check)


def is_cloud(settings: JiraSettings) -> bool:
    """`deployment: cloud|server|auto`; auto means Cloud when the host is *.atlassian.net."""
    if settings.deployment == "cloud":
        return True
    if settings.deployment != "auto":
        return False
    host = (urlsplit(_server(settings)).hostname or "").lower()
    return host == "atlassian.net" or host.endswith(".atlassian.net")


def _connect(settings: JiraSettings) -> JIRA:
    """A client for `handlers.jira` (no request is made until a call uses it)."""
    user = settings.email or settings.user
    secret = settings.token if settings.email else settings.password
    basic_auth = (user, secret) if user and secret else None
    token_auth = None if basic_auth else settings.token
    from jira import JIRA

    client = JIRA(
        server=_server(settings),
        basic_auth=basic_auth,
        token_auth=token_auth,
        # We decide Cloud vs Server from the settings, which saves a serverInfo round trip.
        get_server_info=False,
        max_retries=0,
        timeout=settings.timeout,
    )
    # The client picks /search/jql (Cloud) or /search (Server/DC) from this attribute.
    client.deploymentType = "Cloud" if is_cloud(settings) else "Server"
    return client


async def _run(context: JiraContext, operation: Callable[[JIRA], T]) -> T:
    """Run `operation` with the family's client in a thread; Jira's failures become
    ToolErrors."""
    from jira import JIRAError

    client = await context.client()
    try:
        return await asyncio.to_thread(operation, client)
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


def _server(settings: JiraSettings) -> str:
    if not settings.server:
        raise PermanentToolError("handlers.jira.server is not set")
    return settings.server.rstrip("/")


def _browse_url(settings: JiraSettings, key: str) -> str:
    return f"{_server(settings)}/browse/{key}"


def _issue_link(settings: JiraSettings, key: str, issue_id: str) -> dict[str, Any]:
    return {"key": key, "id": str(issue_id), "url": _browse_url(settings, key)}


def _comment_link(settings: JiraSettings, issue: str, comment_id: str) -> dict[str, Any]:
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
