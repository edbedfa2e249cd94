"""The admin API's route table: every operation once, with what it takes and what it returns.

`gateway.api` serves it and `gateway.api.openapi` documents it: the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel

from gateway.api import endpoints, evals, inputs, models
from gateway.api.inputs import Query

# A handler takes the `Admin` and, by keyword, `id`, `query` and `body` as its endpoint has them.
Handler = Callable[..., Awaitable[BaseModel]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as Starlette routes it
    handler: Handler | None  # None: the OpenAPI document itself
    operation_id: str
    summary: str
    returns: type[BaseModel] | None
    query: type[Query] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = False
    errors: tuple[int, ...] = ()  # besides 401, which every endpoint can answer
    record: str | None = None  # what `{id:int}` names: "the {record}'s id"


# fmt: off
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/openapi.json", None, "openapi", "This document", None),
    Endpoint("GET", "/events", endpoints.list_events, "listEvents",
             "Events, newest first",
             models.EventPage, query=inputs.EventQuery, errors=(422,)),
    Endpoint("GET", "/events/{id:int}", endpoints.get_event, "getEvent",
             "An event: headers, body, runs",
             models.EventDetail, errors=(404,), record="event"),
    Endpoint("POST", "/events/{id:int}/replay", endpoints.replay_event, "replayEvent",
             "Run the rules again on the event (new runs)",
             models.Replayed, errors=(404,), record="event"),
    Endpoint("GET", "/runs", endpoints.list_runs, "listRuns",
             "Runs, newest first",
             models.RunList, query=inputs.RunQuery, errors=(422,)),
    Endpoint("GET", "/runs/{id:int}", endpoints.get_run, "getRun",
             "A run and its steps",
             models.RunDetail, errors=(404,), record="run"),
    Endpoint("POST", "/runs/{id:int}/retry", endpoints.retry_run, "retryRun",
             "Queue a failed or dead run again",
             models.Run, errors=(404, 409), record="run"),
    Endpoint("POST", "/steps/{id:int}/approve", endpoints.approve_step, "approveStep",
             "Approve a step awaiting approval; its run resumes",
             models.Step, body=inputs.Approval, errors=(404, 409, 422), record="step"),
    Endpoint("POST", "/steps/{id:int}/reject", endpoints.reject_step, "rejectStep",
             "Reject a step awaiting approval; the model is told the reason",
             models.Step, body=inputs.Decision, errors=(404, 409, 422), record="step"),
    Endpoint("GET", "/schedules", endpoints.list_schedules, "listSchedules",
             "Scheduled rules: next and last fires",
             models.ScheduleList, query=inputs.ScheduleQuery, errors=(422,)),
    Endpoint("GET", "/reconciliations", endpoints.list_reconciliations, "listReconciliations",
             "Reconciliation runs per source, newest first: what each found missing",
             models.ReconciliationList, query=inputs.ReconciliationQuery, errors=(422,)),
    Endpoint("GET", "/dead", endpoints.list_dead, "listDead",
             "Dead runs (gave up after every attempt)",
             models.RunList, query=inputs.DeadQuery, errors=(422,)),
    Endpoint("GET", "/rules", endpoints.list_rules, "listRules",
             "The loaded rules",
             models.RuleList),
    Endpoint("POST", "/rules/reload", endpoints.reload_rules, "reloadRules",
             "Re-read the rules directory; invalid rules are refused, the old stay",
             models.Reloaded, errors=(422,)),
    Endpoint("POST", "/rules/test", endpoints.test_rules, "testRules",
             "Which rules an event matches and what they would do; executes nothing",
             models.RuleTestResult, body=inputs.RuleTest, body_required=True, errors=(404, 422)),
    Endpoint("GET", "/evals", evals.list_evals, "listEvals",
             "Evals kept in the eval store (gateway eval), newest first",
             evals.EvalList),
    Endpoint("GET", "/evals/{id:int}", evals.get_eval, "getEval",
             "An eval: its totals and its report (live vs candidate, per event)",
             evals.EvalDetail, errors=(404,), record="eval"),
    Endpoint("DELETE", "/evals/{id:int}", evals.delete_eval, "deleteEval",
             "Forget an eval and the events, runs and steps it copied into the eval store",
             evals.EvalDeleted, errors=(404,), record="eval"),
]
# fmt: on
