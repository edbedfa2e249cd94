"""The dashboard under `/ui`: server-rendered pages (Jinja2) and a little plain JavaScript.

Off unless `admin_token` is configured; the login form takes the token and sets a session.
"""

from __future__ import annotations

from importlib import resources

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.api import mount
from gateway.api.auth import Session, Sessions, token_matches
from gateway.config import Config
from gateway.ui.evals import EvalPages
from gateway.ui.knowledge import KnowledgePage
from gateway.ui.pages import Pages
from gateway.ui.session import (
    Page,
    end_session,
    guarded,
    read_form,
    safe_next,
    session_of,
    start_session,
)
from gateway.ui.views import Views

__all__ = ["ui_routes"]

STATIC = {"app.js": "text/javascript", "app.css": "text/css"}


def ui_routes(config: Config) -> list[BaseRoute]:
    """The `/ui` mount, or nothing at all when no admin token is configured."""
    token = config.admin_token
    if not token:
        return []
    sessions = Sessions(token)
    pages = Pages(sessions)
    views = Views(pages)
    evals = EvalPages(pages)

    async def login_form(request: Request) -> Response:
        if await session_of(request, sessions) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), 303)
        return pages.render(
            request,
            None,
            "login.html",
            next=safe_next(request.query_params.get("next")),
            insecure=_insecure(request),
        )

    async def login(request: Request) -> Response:
        form = await read_form(request)
        target = safe_next(form.get("next") if form else None)
        if form is None or not token_matches(form.get("token"), token):
            return pages.render(
                request,
                None,
                "login.html",
                401,
                next=target,
                failed=True,
                insecure=_insecure(request),
            )
        response = RedirectResponse(target, status_code=303)
        start_session(response, sessions)
        return response

    async def logout(request: Request, session: Session) -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        await end_session(request, response, session)
        return response

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found", status_code=404)
        data = resources.files("gateway.ui").joinpath("static", name).read_bytes()
        return Response(data, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})

    async def home(request: Request) -> Response:
        return RedirectResponse("/ui/overview", status_code=303)

    def page(path: str, handler: Page, method: str = "GET") -> Route:
        return Route(path, guarded(sessions, handler), methods=[method])

    routes: list[BaseRoute] = [
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        page("/logout", logout, "POST"),
        Route("/static/{name}", static),
        page("/events", pages.events),
        page("/events/rows", pages.event_rows),
        page("/events/{id:int}", pages.event),
        page("/events/{id:int}/timeline", pages.timeline),
        page("/events/{id:int}/replay", pages.replay, "POST"),
        page("/overview", views.overview),
        page("/overview/panel", views.overview_panel),
        page("/approvals", views.approvals),
        page("/approvals/rows", views.approval_rows),
        page("/runs/{id:int}", views.run),
        page("/runs/{id:int}/panel", views.run_panel),
        page("/runs/{id:int}/retry", pages.retry, "POST"),
        page("/steps/{id:int}/{decision:str}", pages.decide, "POST"),
        page("/schedules", pages.schedules),
        page("/knowledge", KnowledgePage(pages)),
        page("/evals", evals.list),
        page("/evals/{id:int}", evals.show),
        page("/evals/{id:int}/delete", evals.delete, "POST"),
        page("/dead", pages.dead),
        page("/rules", pages.rules),
        page("/rules/test", pages.test_rules, "POST"),
        page("/rules/reload", pages.reload, "POST"),
    ]
    return [mount("/ui", Starlette(routes=routes))]


def _insecure(request: Request) -> bool:
    """Browsers drop a Secure cookie over plain HTTP, except from localhost."""
    local = request.url.hostname in ("localhost", "127.0.0.1", "::1")
    return request.url.scheme == "http" and not local
