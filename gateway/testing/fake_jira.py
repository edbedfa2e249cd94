"""A fake Jira speaking the REST API v2 endpoints the `jira` client calls, with state in memory.

Serve it with `serve_in_thread(fake)`; break it on purpose with `fail_next` and
`drop_response_after_commit_next`; inspect `fake.issues` and `fake.requests` afterwards.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

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


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class _Fault:
    status: int
    retry_after: float | None
    path: str | None


class JqlError(ValueError):
    """A JQL query the fake does not understand (Jira answers 400 with the message)."""


class FakeJira:
    """An ASGI app: a Jira Server (or Cloud, `cloud=True`) with a few projects.

    Cloud answers 410 on the retired /search and serves /search/jql; Server the other way.
    With `credentials=(user, secret)`, requests without that basic auth get 401.
    """

    def __init__(
        self,
        *,
        cloud: bool = False,
        projects: tuple[str, ...] = ("OPS",),
        issue_types: tuple[str, ...] = ("Task", "Bug", "Story", "Epic"),
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.cloud = cloud
        self.projects = set(projects)
        self.issue_types = set(issue_types)
        self.credentials = credentials
        self.issues: dict[str, Issue] = {}
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._drop_next_write = False
        self._app = Starlette(
            routes=[
                Route(f"{API}/serverInfo", self._server_info),
                Route(f"{API}/myself", self._myself),
                Route(f"{API}/field", self._fields),
                Route(f"{API}/project/{{key}}", self._project),
                Route(f"{API}/issue", self._create_issue, methods=["POST"]),
                Route(f"{API}/issue/{{key}}", self._get_issue),
                Route(f"{API}/issue/{{key}}/comment", self._comments, methods=["GET", "POST"]),
                Route(
                    f"{API}/issue/{{key}}/transitions", self._transitions, methods=["GET", "POST"]
                ),
                Route(f"{API}/search", self._search, methods=["GET", "POST"]),
                Route(f"{API}/search/jql", self._search_jql, methods=["GET", "POST"]),
            ]
        )

    # -- fault injection ------------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        retry_after: float | None = None,
        *,
        path: str | None = None,
    ) -> None:
        """Answer the next `n` requests (only those whose path contains `path`, if given)
        with `status`, and a Retry-After header if `retry_after` is set; nothing changes."""
        self._faults.extend(_Fault(status, retry_after, path) for _ in range(n))

    def drop_response_after_commit_next(self) -> None:
        """Carry out the next write (POST/PUT/DELETE), then cut its response short: the client
        gets headers and half a body before the connection closes."""
        self._drop_next_write = True

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        body = await _read_body(receive)
        method, path = scope["method"], scope["path"]
        query = parse_qs(scope["query_string"].decode("latin-1"))
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode("utf-8", errors="replace")
        self.requests.append(RecordedRequest(method, path, query, parsed))

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if self.credentials is not None and not self._authorized(scope):
            denied = _error(
                401, "You are not authenticated. Authentication required to perform this operation."
            )
            await denied(scope, replay, send)
            return
        fault = self._take_fault(path)
        if fault is not None:
            headers = (
                {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
            )
            response = _error(
                fault.status, f"injected failure (HTTP {fault.status})", headers=headers
            )
            await response(scope, replay, send)
            return
        if self._drop_next_write and method in ("POST", "PUT", "DELETE"):
            self._drop_next_write = False

            async def discard(message: Message) -> None:
                pass

            await self._app(scope, replay, discard)
            await send(
                {
                    "type": "http.response.start",
                    "status": 201,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", b"512"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b'{"id": "1', "more_body": True})
            # Returning before the body is complete makes uvicorn close the connection.
            return
        await self._app(scope, replay, send)

    def _authorized(self, scope: Scope) -> bool:
        assert self.credentials is not None
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        headers: dict[bytes, bytes] = dict(scope["headers"])
        return headers.get(b"authorization", b"").decode() == f"Basic {expected}"

    def _take_fault(self, path: str) -> _Fault | None:
        for index, fault in enumerate(self._faults):
            if fault.path is None or fault.path in path:
                return self._faults.pop(index)
        return None

    # -- endpoints ------------------------------------------------------------------------

    async def _server_info(self, request: Request) -> Response:
        return JSONResponse(
            {
                "baseUrl": str(request.base_url).rstrip("/"),
                "version": "1001.0.0" if self.cloud else "9.12.0",
                "versionNumbers": [1001, 0, 0] if self.cloud else [9, 12, 0],
                "deploymentType": "Cloud" if self.cloud else "Server",
                "serverTitle": "Fake Jira",
            }
        )

    async def _myself(self, request: Request) -> Response:
        user = self.credentials[0] if self.credentials else "anonymous"
        return JSONResponse({"name": user, "emailAddress": user, "displayName": "Gateway"})

    async def _fields(self, request: Request) -> Response:
        names = {
            "summary": "Summary",
            "description": "Description",
            "labels": "Labels",
            "status": "Status",
            "issuetype": "Issue Type",
            "project": "Project",
            "comment": "Comment",
        }
        return JSONResponse(
            [
                {"id": fid, "key": fid, "name": name, "custom": False, "clauseNames": [fid]}
                for fid, name in names.items()
            ]
        )

    async def _project(self, request: Request) -> Response:
        key = request.path_params["key"]
        if key not in self.projects:
            return _error(404, f"No project could be found with key '{key}'.")
        return JSONResponse({"id": str(10000 + sorted(self.projects).index(key)), "key": key})

    async def _create_issue(self, request: Request) -> Response:
        fields = (await request.json()).get("fields") or {}
        project = str((fields.get("project") or {}).get("key"))
        summary = str(fields.get("summary") or "")
        issue_type = str((fields.get("issuetype") or {}).get("name"))
        labels = fields.get("labels") or []
        errors: dict[str, str] = {}
        if project not in self.projects:
            errors["project"] = "valid project is required"
        if not summary:
            errors["summary"] = "You must specify a summary of the issue."
        if issue_type not in self.issue_types:
            errors["issuetype"] = "valid issue type is required"
        for label in labels:
            if " " in label:
                errors["labels"] = f"The label '{label}' contains spaces which is invalid."
        if errors:
            return JSONResponse({"errorMessages": [], "errors": errors}, status_code=400)
        number = 1 + sum(1 for issue in self.issues.values() if issue.project == project)
        issue = Issue(
            id=str(10000 + len(self.issues) + 1),
            key=f"{project}-{number}",
            project=project,
            summary=summary,
            issue_type=issue_type,
            description=fields.get("description"),
            labels=list(labels),
        )
        self.issues[issue.key] = issue
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {"id": issue.id, "key": issue.key, "self": f"{base}{API}/issue/{issue.id}"},
            status_code=201,
        )

    async def _get_issue(self, request: Request) -> Response:
        issue = self._find(request.path_params["key"])
        if issue is None:
            return _no_issue()
        return JSONResponse(self._issue_json(issue, request))

    async def _comments(self, request: Request) -> Response:
        issue = self._find(request.path_params["key"])
        if issue is None:
            return _no_issue()
        if request.method == "GET":
            comments = [_comment_json(c) for c in issue.comments]
            return JSONResponse(
                {
                    "startAt": 0,
                    "maxResults": len(comments),
                    "total": len(comments),
                    "comments": comments,
                }
            )
        body = (await request.json()).get("body")
        if not body:
            return JSONResponse(
                {"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}},
                status_code=400,
            )
        added = Comment(
            id=str(20000 + sum(len(i.comments) for i in self.issues.values()) + 1),
            body=body,
            created=_now(),
        )
        issue.comments.append(added)
        return JSONResponse(_comment_json(added), status_code=201)

    async def _transitions(self, request: Request) -> Response:
        issue = self._find(request.path_params["key"])
        if issue is None:
            return _no_issue()
        available = {
            tid: (name, status)
            for status, (tid, name) in WORKFLOW.items()
            if status != issue.status
        }
        if request.method == "GET":
            return JSONResponse(
                {
                    "transitions": [
                        {"id": tid, "name": name, "to": {"name": status}}
                        for tid, (name, status) in available.items()
                    ]
                }
            )
        wanted = str(((await request.json()).get("transition") or {}).get("id"))
        if wanted not in available:
            return _error(400, f"Transition id '{wanted}' is not valid for this issue.")
        issue.status = available[wanted][1]
        return Response(status_code=204)

    async def _search(self, request: Request) -> Response:
        if self.cloud:
            return _error(
                410,
                "The requested API has been removed. "
                "Please migrate to the /rest/api/3/search/jql API.",
            )
        params = await _search_params(request)
        try:
            found = self.query(str(params.get("jql", "")))
        except JqlError as error:
            return _error(400, str(error))
        start = int(params.get("startAt") or 0)
        limit = int(params.get("maxResults") or 50)
        page = found[start : start + limit]
        return JSONResponse(
            {
                "startAt": start,
                "maxResults": limit,
                "total": len(found),
                "issues": [self._issue_json(i, request) for i in page],
            }
        )

    async def _search_jql(self, request: Request) -> Response:
        if not self.cloud:
            return _error(404, "null for uri: /rest/api/2/search/jql")
        params = await _search_params(request)
        try:
            found = self.query(str(params.get("jql", "")))
        except JqlError as error:
            return _error(400, str(error))
        start = int(params.get("nextPageToken") or 0)
        limit = int(params.get("maxResults") or 50)
        page = found[start : start + limit]
        document: dict[str, Any] = {
            "issues": [self._issue_json(i, request) for i in page],
            "isLast": start + limit >= len(found),
        }
        if not document["isLast"]:
            document["nextPageToken"] = str(start + limit)
        return JSONResponse(document)

    # -- JQL ------------------------------------------------------------------------------

    def query(self, jql: str) -> list[Issue]:
        """The issues matching `jql`: clauses on project, labels, key, status and issuetype
        with =, != and in (...), joined by AND; ORDER BY is ignored (issues come in creation
        order). Anything else raises JqlError, as Jira would answer 400."""
        clauses = _parse_jql(jql)
        return [i for i in self.issues.values() if all(_matches(i, c) for c in clauses)]

    # -- rendering ------------------------------------------------------------------------

    def _find(self, key_or_id: str) -> Issue | None:
        if key_or_id in self.issues:
            return self.issues[key_or_id]
        return next((i for i in self.issues.values() if i.id == key_or_id), None)

    def _issue_json(self, issue: Issue, request: Request) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
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
                    "comments": [_comment_json(c) for c in issue.comments],
                    "total": len(issue.comments),
                },
            },
        }


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


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _search_params(request: Request) -> dict[str, Any]:
    if request.method == "POST":
        document = await request.json()
        return document if isinstance(document, dict) else {}
    return dict(request.query_params)


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"errorMessages": [message], "errors": {}}, status_code=status, headers=headers
    )


def _no_issue() -> Response:
    return _error(404, "Issue does not exist or you do not have permission to see it.")


def _comment_json(comment: Comment) -> dict[str, Any]:
    return {
        "id": comment.id,
        "body": comment.body,
        "created": comment.created,
        "author": {"name": "gateway", "displayName": "Gateway"},
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
