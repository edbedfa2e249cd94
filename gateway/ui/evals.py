"""The dashboard's eval pages: the evals kept in the eval store (`gateway eval`), and one
eval's per-event diff of what the live rules did and what the candidate would have done.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.api import gateway_of
from gateway.api.auth import Session
from gateway.api.detail import redactor_for
from gateway.api.endpoints import Admin
from gateway.api.evals import EvalRow
from gateway.api.models import dump
from gateway.api.params import MAX_ID
from gateway.errors import GatewayError
from gateway.evaluation import stored
from gateway.evaluation.report import EvalReport
from gateway.store.records import EvalSummary
from gateway.ui.pages import Pages

# An eval's page shows its events this many at a time (a report holds up to 1,000).
EVENTS_PER_PAGE = 50


def page_number(asked: str | None, pages: int) -> int:
    """The page asked for, within 1..pages; anything but a number is the first."""
    try:
        number = int(asked or 1)
    except ValueError:
        return 1
    return min(max(number, 1), pages)


def summary_row(summary: EvalSummary) -> dict[str, Any]:
    """An eval as its list shows it: the admin API's `EvalRow`."""
    row: dict[str, Any] = dump(EvalRow.of(summary))
    return row


class EvalPages:
    """`GET /ui/evals`, `GET /ui/evals/{id}`, `POST /ui/evals/{id}/delete` (asks first)."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    async def list(self, request: Request, session: Session) -> Response:
        url = Admin(gateway_of(request)).config.eval_store_url
        problem = None
        try:
            rows = [summary_row(s) for s in await stored.listed(url)]
        except (GatewayError, OSError) as exc:  # an eval store that cannot be read is said
            rows, problem = [], f"the eval store cannot be read: {exc}"
        return self.pages.render(request, session, "evals.html", evals=rows, store_problem=problem)

    async def show(self, request: Request, session: Session) -> Response:
        admin = Admin(gateway_of(request))
        eval_id = request.path_params["id"]
        kept = (
            await stored.stored(admin.config.eval_store_url, eval_id)
            if 0 < eval_id <= MAX_ID
            else None
        )
        if kept is None:
            return self.pages.render(request, session, "missing.html", 404, what="eval")
        report = EvalReport.model_validate(kept.report)
        shown = report.redacted(redactor_for(admin.config)).model_dump(mode="json")
        only_changed = request.query_params.get("changed") == "1"
        events = [e for e in shown["events"] if e["changed"] or not only_changed]
        pages = max(1, -(-len(events) // EVENTS_PER_PAGE))
        number = page_number(request.query_params.get("page"), pages)
        start = (number - 1) * EVENTS_PER_PAGE
        # A failed expectation links to its event on the page that holds it (all events).
        where = {e["event_id"]: i // EVENTS_PER_PAGE + 1 for i, e in enumerate(shown["events"])}
        return self.pages.render(
            request,
            session,
            "eval.html",
            summary=summary_row(kept.summary),
            report=shown,
            events=events[start : start + EVENTS_PER_PAGE],
            only_changed=only_changed,
            page=number,
            pages=pages,
            page_of=where,
        )

    async def delete(self, request: Request, session: Session) -> Response:
        """The first press asks (the eval, what deleting it loses); `confirm=yes` deletes."""
        url = Admin(gateway_of(request)).config.eval_store_url
        eval_id = request.path_params["id"]
        form: dict[str, str] = request.state.form
        if form.get("confirm") != "yes":
            kept = await stored.stored(url, eval_id) if 0 < eval_id <= MAX_ID else None
            if kept is None:
                return self.pages.render(request, session, "missing.html", 404, what="eval")
            summary = summary_row(kept.summary)
            return self.pages.render(request, session, "eval_delete.html", summary=summary)
        if not (0 < eval_id <= MAX_ID and await stored.delete(url, eval_id)):
            return self.pages.render(request, session, "missing.html", 404, what="eval")
        return RedirectResponse(f"/ui/evals?notice=eval+{eval_id}+deleted", status_code=303)
