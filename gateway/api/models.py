"""The admin API's contract, the half it returns: pydantic models of every response shape.

Responses are built from them and the OpenAPI document's schemas generated from them; the CLI's
`--json` output and the dashboard show the same shapes (what the API takes: `gateway.api.inputs`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from gateway.rules import model as rules
from gateway.rules.model import Schedule, Trigger
from gateway.store import records
from gateway.store.status import (
    EventStatus,
    ReceivedVia,
    ReconcileStatus,
    RunStatus,
    StepStatus,
)

RuleKind = Literal["actions", "assistant"]
Mode = Literal["live", "shadow"]

# ISO 8601 as `datetime.isoformat()` writes it (`+00:00`, not pydantic's `Z`): what the
# API has always returned.
Timestamp = Annotated[
    datetime,
    PlainSerializer(datetime.isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Cost = Annotated[float, Field(description="US dollars, rounded to 6 places")]


class Shape(BaseModel):
    """A response shape: every field is always present (null when it has no value)."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    @classmethod
    def from_record(cls, record: object, **given: Any) -> Self:
        """The shape of a store record: its attributes named like the shape's fields, and
        `given` for the rest (computed or redacted values, fields the record has not)."""
        copied = {name: getattr(record, name) for name in cls.model_fields if name not in given}
        return cls(**copied, **given)


def dump(shape: BaseModel) -> Any:
    """A model as JSON-ready values, keys as the contract spells them (`as`, not `name`)."""
    return shape.model_dump(mode="json", by_alias=True)


def _absent(schema: dict[str, Any]) -> None:
    del schema["default"]  # not null: left out


class Error(BaseModel):
    """Every error: a code, a sentence, and for invalid input what was wrong."""

    error: str = Field(description="unauthorized, not_found, conflict, invalid_input, ...")
    detail: str
    # Absent, never null, when there is none: `gateway.api.error` dumps it without None.
    problems: Annotated[
        list[str] | None,
        WithJsonSchema({"type": "array", "items": {"type": "string"}}),
        Field(description="one line per problem (422 only)", json_schema_extra=_absent),
    ] = None


class Tokens(Shape):
    input: int
    output: int


def _usage(record: records.Run | records.Step) -> dict[str, Any]:
    return {
        "tokens": Tokens(input=record.input_tokens, output=record.output_tokens),
        "cost": round(record.cost, 6),
    }


class Event(Shape):
    """An event as lists show it: no headers, no body."""

    id: int
    source: str = Field(description="the configured source it came in through")
    provider: str
    type: str
    delivery_id: str = Field(description="the sender's id for the delivery (a hint)")
    status: EventStatus
    received_at: Timestamp
    received_via: ReceivedVia = Field(
        description="webhook; reconcile: found missing through the provider's API"
    )

    @classmethod
    def of(cls, event: records.Event, **given: Any) -> Self:
        return cls.from_record(event, **given)


class EventPage(Shape):
    items: list[Event]
    next_before: int | None = Field(
        description="pass as `before` for the next page; null on the last page"
    )


class Run(Shape):
    """One rule's work on one event."""

    id: int
    event_id: int
    rule: str
    kind: RuleKind
    mode: Mode
    status: RunStatus
    ordering_key: str | None
    attempt: int
    next_attempt_at: Timestamp | None = Field(
        description="when a pending run is retried, or a waiting one tried again"
    )
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    error: str | None = Field(description="the last error; for a waiting run, what it waits for")
    thread_key: str | None
    tokens: Tokens
    cost: Cost

    @classmethod
    def of(cls, run: records.Run, **given: Any) -> Self:
        return cls.from_record(run, **_usage(run), **given)


class RunList(Shape):
    items: list[Run]


class Step(Shape):
    """A model turn (kind `model`, with tokens and cost), a prompt, an answer or a tool call."""

    id: int
    run_id: int
    position: int
    kind: Literal["prompt", "model", "tool", "answer"]
    tool: str | None
    arguments: Any = Field(
        description="the call's arguments: exactly, while it awaits approval; redacted otherwise"
    )
    idempotency_key: str
    status: StepStatus
    result: Any = Field(description="what the call returned (redacted)")
    error: str | None
    attempt: int
    started_at: Timestamp
    duration_ms: float | None
    model: str | None
    call_id: str | None
    tokens: Tokens
    cost: Cost
    decision: Literal["approved", "rejected"] | None
    decided_by: str | None
    reason: str | None
    arguments_digest: str | None = Field(
        description="SHA-256 of the tool and its arguments, recorded when the call was "
        "proposed for approval: send it back to approve exactly these arguments"
    )
    approved_digest: str | None = Field(description="the digest an approval was given for")

    @classmethod
    def of(cls, step: records.Step, **shown: Any) -> Self:
        """The stored step; `shown` replaces fields (arguments and result, redacted)."""
        return cls.from_record(step, **_usage(step) | shown)


class StepDetail(Step):
    """A step inside its run's detail: also when it finished."""

    finished_at: Timestamp | None


class RunDetail(Run):
    steps: list[StepDetail]


class Fetch(Shape):
    """A thin event's fetch of its full object from the provider's API (docs/providers.md)."""

    attempts: int = Field(description="tries made so far")
    next_attempt_at: Timestamp | None = Field(description="the next try, while fetching")
    error: str | None = Field(description="the last try's error; null once fetched")
    fetched_at: Timestamp | None


class EventDetail(Event):
    """An event with its headers, body and runs, secrets redacted."""

    headers: dict[str, str] = Field(description="as received; credentials replaced by [redacted]")
    body: str = Field(description="the body as text, base64 if it is not UTF-8")
    body_encoding: Literal["utf-8", "base64"]
    body_redacted: bool
    payload: Any = Field(description="the body parsed as JSON (redacted), or null")
    fetched: Any = Field(
        None, description="a thin event's object, fetched (redacted): rules' `payload.object`"
    )
    fetch: Fetch | None = Field(None, description="a thin event's fetch; null for other events")
    runs: list[Run]


class EventTimeline(EventDetail):
    """The dashboard's event page: the detail with every run's steps."""

    runs: list[RunDetail]  # type: ignore[assignment]


class Replayed(Shape):
    event_id: int
    runs: list[int] = Field(description="the ids of the new runs")
    fetching: bool = Field(
        False, description="a thin event that had failed to fetch: fetched again, then routed"
    )


class FireTime(Shape):
    local: Timestamp = Field(description="in the schedule's time zone")
    utc: Timestamp


class ScheduledRule(Shape):
    """A scheduled rule: its schedule, its next fire times, its last firing."""

    rule: str
    cron: str | None
    every: str | None
    timezone: str
    catch_up: bool
    jitter: int | None
    misfire_grace: int | None
    next: list[FireTime]
    last_fire_at: Timestamp | None
    last_event_id: int | None
    last_result: str | None = Field(description="fired, duplicate or manual")


class ScheduleList(Shape):
    items: list[ScheduledRule]


class RuleAssistant(Shape):
    model: str
    tools: list[str]


class Rule(Shape):
    """A loaded rule, as its file says it."""

    name: str
    description: str | None
    kind: RuleKind
    mode: Mode
    enabled: bool
    file: str | None = Field(description="the file it was loaded from")
    on: Trigger | None = Field(description="which events it sees (null for a scheduled rule)")
    schedule: Schedule | None
    when: str | None
    order_by: str | None
    actions: list[str] = Field(description="the tools its actions call, in order")
    assistant: RuleAssistant | None

    @classmethod
    def of(cls, rule: rules.Rule, file: Path | None) -> Self:
        spec = rule.assistant
        return cls.from_record(
            rule,
            file=str(file) if file else None,
            on=rule.trigger,
            actions=[a.tool for a in rule.actions],
            assistant=RuleAssistant(model=spec.model, tools=spec.listed_tools) if spec else None,
        )


class RuleList(Shape):
    directory: str = Field(description="the rules directory")
    items: list[Rule]


class Reloaded(Shape):
    reloaded: Literal[True]
    directory: str
    items: list[Rule]


# ---------------------------------------------------------------- the rule tester's answer


class TestedEvent(Shape):
    """The event the rules were tried on (status `test` for one described inline)."""

    id: int = Field(description="0 for an event described inline")
    source: str
    provider: str
    type: str
    delivery_id: str
    status: EventStatus | Literal["test"]


class RuleOutcome(Shape):
    """A rule that does not match (`reason` says why) or whose `when`/`order_by` fails."""

    rule: str
    kind: RuleKind
    mode: Mode
    matched: bool
    reason: str | None
    error: str | None = Field(description="why the run would fail at once")


class ActionPreview(Shape):
    model_config = ConfigDict(populate_by_name=True)

    tool: str
    name: str | None = Field(alias="as", description="the action's `as` name")
    side_effects: bool
    would: Literal["call", "shadow", "skip"]
    arguments: Any = Field(description="rendered and validated, as the tool would get them")
    error: str | None


class ActionsPreview(RuleOutcome):
    """A matching rule with actions: each one rendered as the worker would."""

    ordering_key: str | None
    actions: list[ActionPreview]


class AssistantPreview(Shape):
    model: str
    tools: list[str]
    policy: dict[str, dict[str, Any]]
    limits: dict[str, Any]
    errors: list[str] = Field(description="templates that do not render")
    instructions: str | None
    prompt: str | None
    thread: str | None


class AssistantMatch(RuleOutcome):
    """A matching assistant rule: its prompt rendered; no model is asked."""

    ordering_key: str | None
    assistant: AssistantPreview


class RuleTestResult(Shape):
    event: TestedEvent
    matched: list[str] = Field(description="the rules that match, in order")
    rules: list[ActionsPreview | AssistantMatch | RuleOutcome] = Field(
        description="every loaded rule, whether it matches and what it would do"
    )


class Reconciliation(Shape):
    """One reconciliation run of a source (docs/reconcile.md)."""

    id: int
    source: str
    mode: str = Field(description="redeliver or fetch")
    status: ReconcileStatus
    started_at: Timestamp
    finished_at: Timestamp | None
    since: Timestamp | None = Field(description="the provider was asked from this instant on")
    found: int = Field(description="events the provider listed since then")
    missing: int = Field(description="of those, not in the store")
    stored: int = Field(description="stored by this run")
    redelivered: int = Field(description="redeliveries asked of the provider")
    cursor: str | None = Field(description="the newest event time seen (a success's only)")
    error: str | None

    @classmethod
    def of(cls, record: records.Reconciliation) -> Self:
        return cls.from_record(record)


class ReconciliationList(Shape):
    items: list[Reconciliation]
