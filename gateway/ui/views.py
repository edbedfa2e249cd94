"""The dashboard's operator views: the overview (landing page), a run's own page, and the
approvals inbox. Reads go through the store's parts; decisions through `Pages.decide`.
"""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.api import gateway_of
from gateway.api.auth import Session
from gateway.api.detail import redactor_for, run_detail, step_detail
from gateway.api.endpoints import Admin
from gateway.api.models import Event, dump
from gateway.api.params import MAX_ID
from gateway.store.status import FINISHED
from gateway.ui.overview import overview
from gateway.ui.pages import Pages, environment

# Waiting calls listed at once in the inbox; the oldest come first.
INBOX_LIMIT = 200


def latency(seconds: float | None, bound: bool = False) -> str:
    """`12 ms`, `1.4 s`; a histogram's bucket bound as `≤ 5 ms`, its last as `> 1 s`."""
    if seconds is None:
        return "none yet"
    if math.isinf(seconds):
        return "> 1 s"
    text = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
    return f"≤ {text}" if bound else text


environment.globals["latency"] = latency


class Views:
    """Page handlers of the overview, run and approvals pages."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    async def _overview(self, request: Request) -> dict[str, Any]:
        gateway = gateway_of(request)
        chosen = request.query_params.get("range", "hour")
        return await overview(gateway.store, chosen, gateway.metrics)

    async def overview(self, request: Request, session: Session) -> Response:
        context = await self._overview(request)
        return self.pages.render(request, session, "overview.html", **context)

    async def overview_panel(self, request: Request, session: Session) -> Response:
        context = await self._overview(request)
        return self.pages.render(request, session, "_overview.html", **context)

    async def _run(self, request: Request) -> dict[str, Any] | None:
        admin = Admin(gateway_of(request))
        run_id = request.path_params["id"]
        run = await admin.store.runs.get(run_id) if 0 < run_id <= MAX_ID else None
        event = await admin.store.events.get(run.event_id) if run is not None else None
        if run is None or event is None:
            return None
        detail = dump(await run_detail(admin.store, run, redactor_for(admin.config)))
        return {
            "run": detail,
            "event": dump(Event.of(event)),
            "live": detail["status"] not in FINISHED,
            "back": f"/ui/runs/{run.id}",
        }

    async def run(self, request: Request, session: Session) -> Response:
        context = await self._run(request)
        if context is None:
            return self.pages.render(request, session, "missing.html", 404, what="run")
        return self.pages.render(request, session, "run.html", **context)

    async def run_panel(self, request: Request, session: Session) -> Response:
        context = await self._run(request)
        if context is None:
            return self.pages.render(request, session, "missing.html", 404, what="run")
        response = self.pages.render(request, session, "_run_panel.html", **context)
        response.headers["X-Live"] = "1" if context["live"] else "0"
        return response

    async def _approvals(self, request: Request) -> dict[str, Any]:
        admin = Admin(gateway_of(request))
        redactor = redactor_for(admin.config)
        items = []
        for step in await admin.store.steps.awaiting(INBOX_LIMIT):
            run = await admin.store.runs.get(step.run_id)
            if run is None:
                continue
            event = await admin.store.events.get(run.event_id)
            # step_detail: a waiting call's arguments exactly, unredacted, with their digest.
            items.append(
                {
                    "step": dump(step_detail(step, redactor)),
                    "run": run,
                    "event": dump(Event.of(event)) if event is not None else None,
                }
            )
        return {"items": items, "back": "/ui/approvals"}

    async def approvals(self, request: Request, session: Session) -> Response:
        context = await self._approvals(request)
        return self.pages.render(request, session, "approvals.html", **context)

    async def approval_rows(self, request: Request, session: Session) -> Response:
        context = await self._approvals(request)
        return self.pages.render(request, session, "_approvals.html", **context)
