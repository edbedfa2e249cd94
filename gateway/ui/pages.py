"""The dashboard's pages: event list, event timeline, schedules, dead letters, rule tester.

Each page reads through the same code as the admin API and acts through `gateway.operations`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gateway import operations
from gateway.api import gateway_of
from gateway.api.auth import Session, Sessions
from gateway.api.detail import event_timeline, redactor_for
from gateway.api.endpoints import Admin, rules_of, test_rules
from gateway.api.inputs import RuleTest
from gateway.api.models import Event, Reconciliation, Run, dump
from gateway.api.params import MAX_ID, InvalidInput, parse
from gateway.assistant.budget import reached_today
from gateway.assistant.models import dollars as money
from gateway.errors import ConfigError
from gateway.nesting import READABLE_DEPTH, deeper_than
from gateway.runs.waiting import open_circuits
from gateway.store import records
from gateway.store.status import FINISHED, EventStatus, RunStatus

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _pretty(value: Any) -> str:
    if deeper_than(value, READABLE_DEPTH):  # orjson writes at most 254 levels
        return f"[not shown: nested deeper than {READABLE_DEPTH} levels]"
    return orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode("utf-8")


def _when(value: str | None) -> str:
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    delta = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return f"{delta * 1000:.0f} ms" if delta < 1 else f"{delta:.1f} s"


environment = Environment(
    loader=PackageLoader("gateway.ui", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["pretty"] = _pretty
environment.filters["when"] = _when
environment.globals["duration"] = _seconds
environment.filters["money"] = money


class Pages:
    """The dashboard's page handlers, each given the request and its session."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    def render(
        self, request: Request, session: Session | None, name: str, status: int = 200, **ctx: Any
    ) -> Response:
        csrf = self.sessions.csrf_token(session) if session else ""
        html = environment.get_template(name).render(
            csrf=csrf,
            path=request.url.path,
            notice=request.query_params.get("notice"),
            problem=request.query_params.get("problem"),
            **ctx,
        )
        response = HTMLResponse(html, status_code=status)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    # ------------------------------------------------------------------ events

    async def _events(self, request: Request) -> dict[str, Any]:
        admin = Admin(gateway_of(request))
        filters = {k: request.query_params.get(k) or None for k in ("source", "type", "status")}
        before = request.query_params.get("before", "")
        clean = {k: v[:200] if v else None for k, v in filters.items()}
        events = await admin.store.events.find(
            source=clean["source"],
            type=clean["type"],
            status=clean["status"],
            before=int(before) if before.isdigit() and int(before) <= MAX_ID else None,
            limit=50,
        )
        rows = [dump(Event.of(e)) for e in events]
        runs: dict[int, list[records.Run]] = {}
        if rows:
            found = await admin.store.runs.find(limit=1000)
            for run in found:
                runs.setdefault(run.event_id, []).append(run)
        older = None
        if len(rows) == 50:
            older = "?" + urlencode(
                {**{k: v for k, v in filters.items() if v}, "before": rows[-1]["id"]}
            )
        retention = getattr(gateway_of(request), "retention", None)
        storage = await retention.describe() if retention is not None else None
        return {"events": rows, "runs": runs, "filters": filters, "older": older,
                "storage": storage}  # fmt: skip

    async def events(self, request: Request, session: Session) -> Response:
        context = await self._events(request)
        # Not in the rows that refresh every 3 s: budgets are read once per page.
        admin = Admin(gateway_of(request))
        spent = await reached_today(admin.store, admin.config, admin.rules.rules)
        return self.render(
            request,
            session,
            "events.html",
            request_query=request.url.query,
            budgets=spent,
            **context,
        )

    async def event_rows(self, request: Request, session: Session) -> Response:
        context = await self._events(request)
        return self.render(request, session, "_event_rows.html", **context)

    async def _event(self, request: Request) -> dict[str, Any] | None:
        admin = Admin(gateway_of(request))
        event_id = request.path_params["id"]
        event = await admin.store.events.get(event_id) if 0 < event_id <= MAX_ID else None
        if event is None:
            return None
        detail = dump(await event_timeline(admin.store, event, redactor_for(admin.config)))
        live = event.status in (EventStatus.PENDING, EventStatus.FETCHING) or any(
            r["status"] not in FINISHED for r in detail["runs"]
        )
        return {"event": detail, "live": live}

    async def event(self, request: Request, session: Session) -> Response:
        context = await self._event(request)
        if context is None:
            return self.render(request, session, "missing.html", 404, what="event")
        return self.render(request, session, "event.html", **context)

    async def timeline(self, request: Request, session: Session) -> Response:
        context = await self._event(request)
        if context is None:
            return self.render(request, session, "missing.html", 404, what="event")
        response = self.render(request, session, "_timeline.html", **context)
        response.headers["X-Live"] = "1" if context["live"] else "0"
        return response

    # ------------------------------------------------------------------ actions

    async def replay(self, request: Request, session: Session) -> Response:
        admin = Admin(gateway_of(request))
        event_id = request.path_params["id"]
        try:
            replayed = await operations.replay(admin.store, admin.rules, event_id, admin.worker)
        except operations.NotFound:
            return self.render(request, session, "missing.html", 404, what="event")
        note = (
            f"replayed: run(s) {', '.join(map(str, replayed.run_ids))}"
            if replayed.run_ids
            else "fetching its object again: it is routed once fetched"
            if replayed.fetching
            else "replayed: no rule matches this event now"
        )
        return _back(f"/ui/events/{event_id}", notice=note)

    async def retry(self, request: Request, session: Session) -> Response:
        admin = Admin(gateway_of(request))
        run_id = request.path_params["id"]
        run = await admin.store.runs.get(run_id) if 0 < run_id <= MAX_ID else None
        if run is None:
            return self.render(request, session, "missing.html", 404, what="run")
        try:
            await operations.retry(admin.store, run_id, admin.worker)
        except operations.IllegalState as exc:
            return _back(f"/ui/events/{run.event_id}", problem=str(exc))
        return _back(f"/ui/events/{run.event_id}", notice=f"run {run_id} queued again")

    async def decide(self, request: Request, session: Session) -> Response:
        admin = Admin(gateway_of(request))
        step_id = request.path_params["id"]
        decision = request.path_params["decision"]
        if decision not in ("approve", "reject"):
            return self.render(request, session, "missing.html", 404, what="page")
        step = await admin.store.steps.get(step_id) if 0 < step_id <= MAX_ID else None
        run = await admin.store.runs.get(step.run_id) if step is not None else None
        if step is None or run is None:
            return self.render(request, session, "missing.html", 404, what="step")
        form: dict[str, str] = request.state.form
        reason = (form.get("reason") or "").strip()[:2000] or None
        # Back to the page the form was on (the inbox, the run), else the event's.
        back = re.match(r"/ui/(approvals|runs/\d+|events/\d+)", form.get("back") or "")
        page = back.group(0) if back else f"/ui/events/{run.event_id}"
        # The approve form carries the digest of the arguments it showed: the approval is for
        # those arguments only, and a form without one approves nothing.
        digest = form.get("digest") or None
        if decision == "approve" and digest is None:
            problem = f"step {step_id}: the form did not say which arguments it showed; reload"
            return _back(page, problem=problem)
        try:
            await operations.decide(
                admin.store,
                step_id,
                "approved" if decision == "approve" else "rejected",
                by="dashboard",
                reason=reason,
                digest=digest if decision == "approve" else None,
                worker=admin.worker,
            )
        except operations.IllegalState as exc:
            return _back(page, problem=str(exc))
        verb = "approved" if decision == "approve" else "rejected"
        return _back(page, notice=f"step {step_id} {verb}; run resumes")

    # ------------------------------------------------------------------ other pages

    async def schedules(self, request: Request, session: Session) -> Response:
        from gateway.scheduler import list_schedules

        admin = Admin(gateway_of(request))
        items = await list_schedules(admin.store, admin.rules.rules, datetime.now(UTC), count=3)
        # Beside the schedules: the last reconciliation runs, as the admin API lists them.
        runs = await admin.store.reconciliations.recent(limit=20)
        reconciliations = [dump(Reconciliation.of(r)) for r in runs]
        return self.render(
            request, session, "schedules.html", schedules=items, reconciliations=reconciliations
        )

    async def dead(self, request: Request, session: Session) -> Response:
        admin = Admin(gateway_of(request))
        runs = [
            dump(Run.of(r)) for r in await admin.store.runs.find(status=RunStatus.DEAD, limit=200)
        ]
        waiting = await admin.store.runs.find(status=RunStatus.WAITING, limit=200)
        circuits = open_circuits(dump(Run.of(r)) for r in waiting)
        return self.render(request, session, "dead.html", runs=runs, circuits=circuits)

    async def rules(self, request: Request, session: Session) -> Response:
        return await self._rules(request, session)

    async def _rules(
        self,
        request: Request,
        session: Session,
        *,
        result: dict[str, Any] | None = None,
        problems: list[str] | None = None,
        form: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        admin = Admin(gateway_of(request))
        rules = [dump(rule) for rule in rules_of(admin.rules)]
        recent = [dump(Event.of(e)) for e in await admin.store.events.find(limit=50)]
        return self.render(
            request,
            session,
            "rules.html",
            status,
            rules=rules,
            recent=recent,
            result=result,
            problems=problems or [],
            form=form or {},
        )

    async def test_rules(self, request: Request, session: Session) -> Response:
        admin = Admin(gateway_of(request))
        form: dict[str, str] = request.state.form
        body: dict[str, Any]
        try:
            if form.get("event_id"):
                if not form["event_id"].isdigit():
                    raise InvalidInput(["event_id: pick a stored event"])
                body = {"event_id": int(form["event_id"])}
            else:
                try:
                    body = orjson.loads(form.get("event", ""))
                except orjson.JSONDecodeError as exc:
                    raise InvalidInput([f"event: invalid JSON: {exc}"]) from None
                if not isinstance(body, dict):
                    raise InvalidInput(["event: a JSON object {source, type, payload, headers}"])
                body.pop("event_id", None)
            result = dump(await test_rules(admin, parse(RuleTest, body)))
        except InvalidInput as exc:
            return await self._rules(request, session, problems=exc.problems, form=form, status=422)
        except operations.NotFound as exc:
            return await self._rules(request, session, problems=[str(exc)], form=form, status=404)
        return await self._rules(request, session, result=result, form=form)

    async def reload(self, request: Request, session: Session) -> Response:
        try:
            rules = await operations.reload_rules(gateway_of(request))
        except ConfigError as exc:
            return await self._rules(request, session, problems=exc.problems, status=422)
        return _back("/ui/rules", notice=f"reloaded {len(rules.rules)} rule(s)")


def _back(path: str, **message: str) -> Response:
    return RedirectResponse(f"{path}?{urlencode(message)}", status_code=303)
