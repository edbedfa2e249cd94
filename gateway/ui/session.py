"""Dashboard access: the login cookie, CSRF checks on every form, and form parsing.

Pages need a live session (else they redirect to the login form): signed, unexpired, and not
ended by a logout, which the store records for every replica. POSTs also need the session's
CSRF token. The cookie is Secure, HttpOnly and SameSite=Strict, scoped to `/ui`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from gateway.api import gateway_of
from gateway.api.auth import SESSION_COOKIE, SESSION_SECONDS, Session, Sessions
from gateway.store import Store

Page = Callable[[Request, Session], Awaitable[Response]]


class Form(dict[str, str]):
    """A urlencoded form body (the dashboard posts nothing else)."""


async def read_form(request: Request) -> Form | None:
    """The posted form, or None if it is not urlencoded (`server.max_body_bytes` caps its size)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    raw = await request.body()
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        return None
    return Form(pairs)


async def session_of(request: Request, sessions: Sessions) -> Session | None:
    """The request's session, unless its cookie is missing, forged, expired or logged out."""
    session = sessions.check(request.cookies.get(SESSION_COOKIE))
    if session is None or await _store(request).sessions.revoked(session.nonce):
        return None
    return session


def _store(request: Request) -> Store:
    return gateway_of(request).store


def login_redirect(request: Request) -> Response:
    if request.headers.get("x-requested-with") == "fetch":
        return PlainTextResponse("session expired", status_code=401)
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)


def start_session(response: Response, sessions: Sessions) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        sessions.issue(),
        max_age=SESSION_SECONDS,
        path="/ui",
        secure=True,
        httponly=True,
        samesite="strict",
    )


async def end_session(request: Request, response: Response, session: Session) -> None:
    """Revoke the session in the store (a copy of the cookie stops working too), drop it."""
    expires = datetime.fromtimestamp(session.expires, UTC)
    await _store(request).sessions.revoke(session.nonce, expires)
    response.delete_cookie(
        SESSION_COOKIE, path="/ui", secure=True, httponly=True, samesite="strict"
    )


def safe_next(target: str | None) -> str:
    """Only a dashboard path is a place to go after login (no open redirect)."""
    if target and target.startswith("/ui/") and not target.startswith("/ui//"):
        return target
    return "/ui/events"


def guarded(sessions: Sessions, page: Page) -> Callable[[Request], Awaitable[Response]]:
    """A page that needs a session; a POST also needs the session's CSRF token in its form."""

    async def endpoint(request: Request) -> Response:
        session = await session_of(request, sessions)
        if session is None:
            return login_redirect(request)
        if request.method == "POST":
            form = await read_form(request)
            if form is None or not sessions.csrf_ok(session, form.get("csrf")):
                return PlainTextResponse("invalid or missing CSRF token", status_code=403)
            request.state.form = form
        response = await page(request, session)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return endpoint
