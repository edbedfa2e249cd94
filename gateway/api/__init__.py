"""The admin API under `/api`: events, runs, steps, schedules, dead letters and rules, as JSON.

Off unless `admin_token` is configured; every endpoint wants `Authorization: Bearer <token>`.
Errors: 401 without the token, 404 for an unknown id, 409 for a change the state forbids,
422 for bad input. The OpenAPI document is at `/api/openapi.json`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

import orjson
import structlog
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api import params
from gateway.api.auth import bearer, token_matches
from gateway.api.endpoints import Admin
from gateway.api.models import Error, dump
from gateway.api.openapi import document
from gateway.api.params import InvalidInput, OutOfRange
from gateway.api.routes import ENDPOINTS, Endpoint
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.operations import IllegalState, NotFound
from gateway.runtime import Gateway

__all__ = ["ENDPOINTS", "api_routes", "gateway_of", "json_response"]

log = structlog.get_logger(__name__)
# The scope key under which the gateway's own Starlette app travels into mounted sub-apps.
GATEWAY_APP = "gateway.app"


def json_response(value: Any, status_code: int = 200, **headers: str) -> Response:
    body = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status_code, headers=headers or None, media_type="application/json")


def error(status: int, code: str, detail: str, problems: list[str] | None = None) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    shape = Error(error=code, detail=detail, problems=problems)
    return json_response(shape.model_dump(mode="json", exclude_none=True), status, **headers)


def gateway_of(request: Request) -> Gateway:
    """The gateway's runtime (store, rules, worker, config), seen from a mounted sub-app."""
    gateway: Gateway = request.scope[GATEWAY_APP].state.gateway
    return gateway


class _CarryApp:
    """Passes the gateway's app to a mounted Starlette app, which replaces `scope["app"]`."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault(GATEWAY_APP, scope.get("app"))
        await self.inner(scope, receive, send)


def mount(path: str, inner: ASGIApp) -> Mount:
    mounted = Mount(path, app=_CarryApp(inner))
    # Starlette's `{path:path}` is `.*`, which stops at a newline: a path holding an encoded
    # one (`/api/runs/%0A/retry`) fell out of the mount to the outer app's plain-text 404.
    mounted.path_regex = re.compile(mounted.path_regex.pattern, re.DOTALL)
    return mounted


@cache
def _document() -> bytes:
    return orjson.dumps(document())  # the same for the process's life; ~30 ms to generate


async def _call(endpoint: Endpoint, request: Request) -> BaseModel:
    """Parse what `endpoint` takes from `request` (id, then query, then body) and call it."""
    assert endpoint.handler is not None
    given: dict[str, Any] = {}
    if endpoint.record is not None:
        given["id"] = params.record_id(request)
    if endpoint.query is not None:
        given["query"] = params.query(endpoint.query, request)
    if endpoint.body is not None:
        body = await params.json_body(request, required=endpoint.body_required)
        given["body"] = params.parse(endpoint.body, body)
    return await endpoint.handler(Admin(gateway_of(request)), **given)


def _serve(token: str, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        if not token_matches(bearer(request), token):
            return error(401, "unauthorized", "a valid `Authorization: Bearer` token is required")
        if endpoint.handler is None:
            return Response(_document(), media_type="application/json")
        try:
            return json_response(dump(await _call(endpoint, request)))
        except (NotFound, OutOfRange) as exc:
            return error(404, "not_found", str(exc) if isinstance(exc, NotFound) else "no such id")
        except IllegalState as exc:
            return error(409, "conflict", str(exc))
        except InvalidInput as exc:
            return error(422, "invalid_input", str(exc), problems=exc.problems)
        except ConfigError as exc:  # a rule reload that does not validate
            return error(422, "invalid_rules", "the rules do not load", problems=exc.problems)

    return serve


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    response = error(exc.status_code, code, exc.detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def api_routes(config: Config) -> list[BaseRoute]:
    """The `/api` mount, or nothing at all when no admin token is configured."""
    token = config.admin_token
    if not token:
        return []
    routes = [Route(e.path, _serve(token, e), methods=[e.method]) for e in ENDPOINTS]
    inner = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    return [mount("/api", inner)]
