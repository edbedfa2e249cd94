"""A fake Jira speaking the REST API v2 endpoints the `jira` client calls, with state in memory.

Serve it with `serve_in_thread(fake)`; break it on purpose with `fail_next` and
`drop_response_after_commit_next`; inspect `fake.issues` and `fake.requests` afterwards.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from gateway.testing.jira_issues import (
    API,
    WORKFLOW,
    Comment,
    Issue,
    JqlError,
    comment_json,
    issue_json,
    matching,
    now,
)


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
        return JSONResponse(issue_json(issue, _base(request)))

    async def _comments(self, request: Request) -> Response:
        issue = self._find(request.path_params["key"])
        if issue is None:
            return _no_issue()
        if request.method == "GET":
            comments = [comment_json(c) for c in issue.comments]
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
            created=now(),
        )
        issue.comments.append(added)
        return JSONResponse(comment_json(added), status_code=201)

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
                "issues": [issue_json(i, _base(request)) for i in page],
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
            "issues": [issue_json(i, _base(request)) for i in page],
            "isLast": start + limit >= len(found),
        }
        if not document["isLast"]:
            document["nextPageToken"] = str(start + limit)
        return JSONResponse(document)

    def query(self, jql: str) -> list[Issue]:
        """The issues matching `jql`, in creation order (`jira_issues.matching` says which JQL
        is understood); JqlError for the rest, as Jira would answer 400."""
        return matching(self.issues.values(), jql)

    def _find(self, key_or_id: str) -> Issue | None:
        if key_or_id in self.issues:
            return self.issues[key_or_id]
        return next((i for i in self.issues.values() if i.id == key_or_id), None)


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


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")
