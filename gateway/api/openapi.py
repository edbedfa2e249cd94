"""The admin API's OpenAPI 3.1 document, written by hand next to the endpoints it describes."""

from __future__ import annotations

from typing import Any

from gateway import __version__

MAX_ID = 2**63 - 1

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/E{code}"} for code in (401, *codes)}


def _id(what: str) -> Schema:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": f"the {what}'s id",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    }


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


LIMIT = _query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
    "at most this many, newest first",
)

TOKENS: Schema = {
    "type": "object",
    "properties": {"input": {"type": "integer"}, "output": {"type": "integer"}},
    "required": ["input", "output"],
}
BY: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "description": "who decides (recorded)",
}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "detail": {"type": "string"},
            "problems": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["error", "detail"],
    },
    "Event": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "source": {"type": "string"},
            "provider": {"type": "string"},
            "type": {"type": "string"},
            "delivery_id": {"type": "string"},
            "status": {"type": "string", "examples": ["pending", "routed", "unmatched"]},
            "received_at": {"type": "string", "format": "date-time"},
        },
        "required": ["id", "source", "provider", "type", "delivery_id", "status", "received_at"],
    },
    "EventPage": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref("Event")},
            "next_before": {
                **_nullable("integer"),
                "description": "pass as `before` for the next page; null on the last page",
            },
        },
        "required": ["items", "next_before"],
    },
    "EventDetail": {
        "allOf": [
            _ref("Event"),
            {
                "type": "object",
                "properties": {
                    "headers": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "as received; credentials replaced by [redacted]",
                    },
                    "body": {"type": "string"},
                    "body_encoding": {"enum": ["utf-8", "base64"]},
                    "body_redacted": {"type": "boolean"},
                    "payload": {"description": "the body parsed as JSON (redacted), or null"},
                    "runs": {"type": "array", "items": _ref("Run")},
                },
                "required": ["headers", "body", "body_encoding", "body_redacted", "runs"],
            },
        ]
    },
    "Run": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "event_id": {"type": "integer"},
            "rule": {"type": "string"},
            "kind": {"enum": ["actions", "assistant"]},
            "mode": {"enum": ["live", "shadow"]},
            "status": {
                "type": "string",
                "examples": [
                    "pending",
                    "running",
                    "awaiting_approval",
                    "succeeded",
                    "failed",
                    "dead",
                ],
            },
            "ordering_key": _nullable("string"),
            "attempt": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": _nullable("string", format="date-time"),
            "finished_at": _nullable("string", format="date-time"),
            "error": _nullable("string"),
            "thread_key": _nullable("string"),
            "tokens": TOKENS,
            "cost": {"type": "number"},
        },
        "required": [
            "id",
            "event_id",
            "rule",
            "kind",
            "mode",
            "status",
            "attempt",
            "tokens",
            "cost",
        ],
    },
    "RunList": {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _ref("Run")}},
        "required": ["items"],
    },
    "RunDetail": {
        "allOf": [
            _ref("Run"),
            {
                "type": "object",
                "properties": {"steps": {"type": "array", "items": _ref("Step")}},
                "required": ["steps"],
            },
        ]
    },
    "Step": {
        "type": "object",
        "description": "A model turn (kind model, with tokens and cost) or a tool call.",
        "properties": {
            "id": {"type": "integer"},
            "run_id": {"type": "integer"},
            "position": {"type": "integer"},
            "kind": {"enum": ["prompt", "model", "tool", "answer"]},
            "tool": _nullable("string"),
            "arguments": {
                "description": "the call's arguments: exactly, while it awaits approval; "
                "redacted otherwise"
            },
            "status": {
                "type": "string",
                "examples": ["succeeded", "awaiting_approval", "shadowed", "refused"],
            },
            "result": {"description": "what the call returned (redacted)"},
            "error": _nullable("string"),
            "attempt": {"type": "integer"},
            "started_at": {"type": "string", "format": "date-time"},
            "finished_at": _nullable("string", format="date-time"),
            "duration_ms": _nullable("number"),
            "model": _nullable("string"),
            "tokens": TOKENS,
            "cost": {"type": "number"},
            "decision": _nullable("string"),
            "decided_by": _nullable("string"),
            "reason": _nullable("string"),
            "call_id": _nullable("string"),
            "arguments_digest": _nullable(
                "string",
                description="SHA-256 of the tool and its arguments, recorded when the call "
                "was proposed for approval: send it back to approve exactly these arguments",
            ),
            "approved_digest": _nullable(
                "string", description="the digest an approval was given for"
            ),
        },
        "required": ["id", "run_id", "position", "kind", "status"],
    },
    "Replayed": {
        "type": "object",
        "properties": {
            "event_id": {"type": "integer"},
            "runs": {"type": "array", "items": {"type": "integer"}},
        },
        "required": ["event_id", "runs"],
    },
    "Decision": {
        "type": "object",
        "properties": {
            "by": BY,
            "reason": {"type": "string", "description": "why (the model is told on reject)"},
        },
    },
    "Approval": {
        "type": "object",
        "properties": {
            "by": BY,
            "digest": {
                "type": "string",
                "pattern": "^[0-9a-f]{64}$",
                "description": "the step's arguments_digest as the approver saw it; 409 if "
                "the step's arguments no longer have it (without it, the approval is for the "
                "arguments the step holds now)",
            },
        },
    },
    "ScheduleList": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "rule": {"type": "string"},
                        "cron": _nullable("string"),
                        "every": _nullable("string"),
                        "timezone": {"type": "string"},
                        "next": {"type": "array", "items": {"type": "object"}},
                        "last_fire_at": _nullable("string", format="date-time"),
                        "last_event_id": _nullable("integer"),
                        "last_result": {},
                    },
                    "required": ["rule", "next"],
                },
            }
        },
        "required": ["items"],
    },
    "RuleList": {
        "type": "object",
        "properties": {
            "directory": {"type": "string"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"enum": ["actions", "assistant"]},
                        "mode": {"enum": ["live", "shadow"]},
                        "enabled": {"type": "boolean"},
                        "file": _nullable("string"),
                        "on": {},
                        "schedule": {},
                    },
                    "required": ["name", "kind", "mode", "enabled"],
                },
            },
        },
        "required": ["items"],
    },
    "RuleTest": {
        "type": "object",
        "description": "A stored event (`event_id`) or one described inline.",
        "properties": {
            "event_id": {"type": "integer", "minimum": 1},
            "source": {"type": "string", "minLength": 1},
            "type": {"type": "string", "minLength": 1},
            "payload": {"description": "the event's JSON payload"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "event": {
                "type": "object",
                "description": "the same source, type, payload, headers, nested",
            },
        },
        "examples": [{"source": "shop", "type": "orders/create", "payload": {"name": "#1"}}],
    },
    "RuleTestResult": {
        "type": "object",
        "properties": {
            "event": {"type": "object"},
            "matched": {"type": "array", "items": {"type": "string"}},
            "rules": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "rule": {"type": "string"},
                        "matched": {"type": "boolean"},
                        "reason": _nullable("string"),
                        "error": _nullable("string"),
                        "actions": {"type": "array", "items": {"type": "object"}},
                        "assistant": {"type": "object"},
                    },
                    "required": ["rule", "matched"],
                },
            },
        },
        "required": ["matched", "rules"],
    },
}


def _op(
    summary: str,
    response: str,
    *,
    errors: tuple[int, ...] = (),
    parameters: list[Schema] | None = None,
    body: str | None = None,
    body_required: bool = False,
    op_id: str,
) -> Schema:
    operation: Schema = {
        "operationId": op_id,
        "summary": summary,
        "responses": {"200": _json(_ref(response), "OK"), **_errors(*errors)},
    }
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


def document() -> Schema:
    """The OpenAPI 3.1 document of `/api` (paths relative to the `/api` server)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Webhook gateway admin API",
            "version": __version__,
            "description": "Inspect events and runs, replay, retry, approve, reject; rules.",
        },
        "servers": [{"url": "/api"}],
        "security": [{"bearer": []}],
        "paths": {
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": _json({"type": "object"}, "The OpenAPI document"),
                        **_errors(),
                    },
                }
            },
            "/events": {
                "get": _op(
                    "Events, newest first",
                    "EventPage",
                    errors=(422,),
                    op_id="listEvents",
                    parameters=[
                        _query("source", {"type": "string"}, "only this source"),
                        _query("type", {"type": "string"}, "only this event type"),
                        _query("status", {"type": "string"}, "pending, routed or unmatched"),
                        _query(
                            "since",
                            {"type": "string", "format": "date-time"},
                            "received at or after",
                        ),
                        _query(
                            "until", {"type": "string", "format": "date-time"}, "received before"
                        ),
                        _query(
                            "before", {"type": "integer", "minimum": 1}, "ids below this (paging)"
                        ),
                        LIMIT,
                    ],
                )
            },
            "/events/{id}": {
                "get": _op(
                    "An event: headers, body, runs",
                    "EventDetail",
                    errors=(404,),
                    op_id="getEvent",
                    parameters=[_id("event")],
                )
            },
            "/events/{id}/replay": {
                "post": _op(
                    "Run the rules again on the event (new runs)",
                    "Replayed",
                    errors=(404,),
                    op_id="replayEvent",
                    parameters=[_id("event")],
                )
            },
            "/runs": {
                "get": _op(
                    "Runs, newest first",
                    "RunList",
                    errors=(422,),
                    op_id="listRuns",
                    parameters=[
                        _query("status", {"type": "string"}, "only runs in this status"),
                        _query("rule", {"type": "string"}, "only runs of this rule"),
                        _query(
                            "event", {"type": "integer", "minimum": 1}, "only runs of this event"
                        ),
                        LIMIT,
                    ],
                )
            },
            "/runs/{id}": {
                "get": _op(
                    "A run and its steps",
                    "RunDetail",
                    errors=(404,),
                    op_id="getRun",
                    parameters=[_id("run")],
                )
            },
            "/runs/{id}/retry": {
                "post": _op(
                    "Queue a failed or dead run again",
                    "Run",
                    errors=(404, 409),
                    op_id="retryRun",
                    parameters=[_id("run")],
                )
            },
            "/steps/{id}/approve": {
                "post": _op(
                    "Approve a step awaiting approval; its run resumes",
                    "Step",
                    errors=(404, 409, 422),
                    op_id="approveStep",
                    parameters=[_id("step")],
                    body="Approval",
                )
            },
            "/steps/{id}/reject": {
                "post": _op(
                    "Reject a step awaiting approval; the model is told the reason",
                    "Step",
                    errors=(404, 409, 422),
                    op_id="rejectStep",
                    parameters=[_id("step")],
                    body="Decision",
                )
            },
            "/schedules": {
                "get": _op(
                    "Scheduled rules: next and last fires",
                    "ScheduleList",
                    errors=(422,),
                    op_id="listSchedules",
                    parameters=[
                        _query(
                            "count",
                            {"type": "integer", "minimum": 1, "maximum": 50},
                            "next fires shown",
                        ),
                    ],
                )
            },
            "/dead": {
                "get": _op(
                    "Dead runs (gave up after every attempt)",
                    "RunList",
                    errors=(422,),
                    op_id="listDead",
                    parameters=[LIMIT],
                )
            },
            "/rules": {"get": _op("The loaded rules", "RuleList", op_id="listRules")},
            "/rules/reload": {
                "post": _op(
                    "Re-read the rules directory; invalid rules are refused, the old stay",
                    "RuleList",
                    errors=(422,),
                    op_id="reloadRules",
                )
            },
            "/rules/test": {
                "post": _op(
                    "Which rules an event matches and what they would do; executes nothing",
                    "RuleTestResult",
                    errors=(404, 422),
                    op_id="testRules",
                    body="RuleTest",
                    body_required=True,
                )
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
            "responses": {
                f"E{code}": _json(_ref("Error"), text)
                for code, text in {
                    401: "No or wrong bearer token",
                    404: "No record with this id",
                    409: "The record's state does not allow this change",
                    422: "Invalid parameters or body",
                }.items()
            },
        },
    }
