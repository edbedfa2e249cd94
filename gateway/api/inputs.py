"""The admin API's contract, the half it takes: query parameters and request bodies as models.

`gateway.api.params.parse` validates a request against one of these, or answers 422 with a line
per problem; the OpenAPI document's parameters and request bodies are generated from them.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    RootModel,
    StrictInt,
    StrictStr,
    Tag,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from gateway.api.params import MAX_ID, MAX_LIMIT, InvalidInput, parse

# ---------------------------------------------------------------- query parameters


@dataclass(frozen=True)
class Between:
    """An integer query parameter, read as `int()` reads text, from `low` to `high`."""

    low: int
    high: int

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self.read, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}

    def read(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            number = int(value)
        except ValueError:
            raise PydanticCustomError(
                "not_an_integer", "not an integer: {value}", {"value": repr(value[:40])}
            ) from None
        if not self.low <= number <= self.high:
            raise PydanticCustomError(
                "out_of_range",
                "must be between {low} and {high}",
                {"low": self.low, "high": self.high},
            )
        return number


def _text(value: Any) -> Any:
    if isinstance(value, str) and (len(value) > 200 or "\x00" in value):
        raise PydanticCustomError("text", "at most 200 characters, no NUL")
    return value


AGO = re.compile(r"^(\d{1,6})([dhm])$")
UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def read_time(text: str, now: datetime | None = None) -> datetime:
    """`7d`, `24h`, `30m` (that long before `now`) or an ISO 8601 time as
    `datetime.fromisoformat` reads it (UTC if it names no zone), in UTC; ValueError if neither.
    The one reading of a time filter: the API's `since`/`until`, `gateway eval`'s."""
    found = AGO.match(text.strip())
    try:
        if found:
            ago = timedelta(**{UNITS[found[2]]: int(found[1])})
            return (now or datetime.now(UTC)) - ago
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"not a time: {text[:40]!r} (use 7d, 24h, 30m or an ISO 8601 date-time)"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"out of range: {text[:40]!r}") from None


def _time(value: Any) -> Any:
    """A time as `read_time` reads it."""
    if not isinstance(value, str):
        return value
    try:
        return read_time(value)
    except ValueError as exc:
        raise PydanticCustomError("not_a_time", "{message}", {"message": str(exc)}) from None


Text = Annotated[
    str | None, BeforeValidator(_text), WithJsonSchema({"type": "string", "maxLength": 200})
]
Time = Annotated[
    datetime | None,
    BeforeValidator(_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Id = Annotated[int | None, Between(1, MAX_ID)]
Limit = Annotated[int, Between(1, MAX_LIMIT), Field(description="at most this many, newest first")]


class Query(BaseModel):
    """Query parameters; an empty one counts as absent (`gateway.api.params.query`)."""


class EventQuery(Query):
    source: Text = Field(None, description="only this source")
    type: Text = Field(None, description="only this event type")
    status: Text = Field(None, description="pending, routed or unmatched")
    since: Time = Field(None, description="received at or after (a time, or 7d, 24h, 30m ago)")
    until: Time = Field(None, description="received before (a time, or 7d, 24h, 30m ago)")
    before: Id = Field(None, description="ids below this (paging)")
    limit: Limit = 50


# The filters an event query (`gateway eval --events`) may name besides `payload.FIELD`.
EVENT_FILTERS = ("source", "type", "status", "since", "until")
# `payload.FIELD` matches in one event query, and the depth of FIELD: a bound on the work.
MAX_PAYLOAD_MATCHES = 10
MAX_PAYLOAD_DEPTH = 10


def event_query(text: str) -> tuple[EventQuery, dict[str, str]]:
    """An event query as `gateway eval --events` takes it: `key=value` pairs apart by spaces
    or `&` (an admin API query string reads the same), values quoted as a shell quotes them.
    Keys: those of `EventQuery` (validated by it, as the API validates its query parameters)
    and `payload.FIELD` (a dotted path in the JSON payload, matched exactly). InvalidInput
    with a line per problem."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InvalidInput([f"--events: {exc}"]) from None
    given: dict[str, str] = {}
    payload: dict[str, str] = {}
    problems: list[str] = []
    for pair in (p for word in words for p in word.split("&") if p):
        key, equals, value = pair.partition("=")
        if not equals or not key:
            problems.append(f"{pair[:40]!r}: not key=value")
        elif key.startswith("payload.") and key != "payload.":
            if len(key.split(".")) - 1 > MAX_PAYLOAD_DEPTH:
                problems.append(f"{key[:60]}: at most {MAX_PAYLOAD_DEPTH} levels deep")
            payload[key.removeprefix("payload.")] = value
        elif key in EVENT_FILTERS:
            given[key] = value
        else:
            known = ", ".join(EVENT_FILTERS)
            problems.append(f"{key[:40]}: not a filter (use {known} or payload.FIELD)")
    if len(payload) > MAX_PAYLOAD_MATCHES:
        problems.append(f"at most {MAX_PAYLOAD_MATCHES} payload.FIELD matches")
    if problems:
        raise InvalidInput(problems)
    return parse(EventQuery, {k: v for k, v in given.items() if v != ""}), payload


class RunQuery(Query):
    status: Text = Field(
        None,
        description="only runs in this status: pending, running, waiting, awaiting_approval, "
        "succeeded, failed, dead",
    )
    rule: Text = Field(None, description="only runs of this rule")
    event: Id = Field(None, description="only runs of this event")
    limit: Limit = 50


class DeadQuery(Query):
    limit: Limit = 50


class ReconciliationQuery(Query):
    source: Text = Field(None, description="only this source's runs")
    limit: Limit = 20


class ScheduleQuery(Query):
    count: Annotated[int, Between(1, 50)] = Field(5, description="next fires shown")


# ---------------------------------------------------------------- request bodies


class Body(BaseModel):
    """A request body. `PROBLEMS`, per field, is the line a 422 gives for any error in it."""

    PROBLEMS: ClassVar[dict[str, str]] = {}


BY = "a non-empty string of at most 200 characters"
By = Annotated[StrictStr, Field(min_length=1, max_length=200, description="who decides (recorded)")]


class Approval(Body):
    PROBLEMS: ClassVar[dict[str, str]] = {
        "by": BY,
        "digest": "the step's arguments_digest, 64 hex digits",
    }

    by: By = "api"
    digest: Annotated[StrictStr, Field(pattern="^[0-9a-f]{64}$")] | None = Field(
        None,
        description="the step's arguments_digest as the approver saw it; 409 if the step's "
        "arguments no longer have it (without it, the approval is for the arguments the "
        "step holds now)",
    )


class Decision(Body):
    PROBLEMS: ClassVar[dict[str, str]] = {"reason": "must be a string", "by": BY}

    reason: StrictStr | None = Field(None, description="why (the model is told on reject)")
    by: By = "api"


class StoredEvent(BaseModel):
    """Try the rules on a stored event."""

    event_id: StrictInt = Field(description="a stored event's id (404 if there is none)")


class InlineEvent(BaseModel):
    """Try the rules on an event described here, never received."""

    source: Annotated[StrictStr, Field(min_length=1)]
    type: Annotated[StrictStr, Field(min_length=1)]
    payload: Any = Field(None, description="the event's JSON payload")
    headers: Annotated[
        dict[str, StrictStr],
        BeforeValidator(lambda value: value or {}),  # null, or none at all
        Field(default_factory=dict),
    ]


def _flat(value: Any) -> str:
    if isinstance(value, dict) and value.get("event_id") is not None:
        return "stored"
    return "inline"


def _nested(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("event"), dict):
        return "nested"
    return _flat(value)


Target = Annotated[
    Annotated[StoredEvent, Tag("stored")] | Annotated[InlineEvent, Tag("inline")],
    Discriminator(_flat),
]


class NestedEvent(BaseModel):
    """The same, nested under `event` (other keys beside it are ignored)."""

    event: Target


class RuleTest(
    RootModel[
        Annotated[
            Annotated[NestedEvent, Tag("nested")]
            | Annotated[StoredEvent, Tag("stored")]
            | Annotated[InlineEvent, Tag("inline")],
            Discriminator(_nested),
        ]
    ]
):
    """A stored event (`event_id`) or one described inline, possibly nested under `event`."""

    PROBLEMS: ClassVar[dict[str, str]] = {
        "event_id": "must be an integer",
        "source": "a non-empty string is required (or give event_id)",
        "type": "a non-empty string is required (or give event_id)",
        "headers": "an object of strings",
    }
    model_config = {
        "json_schema_extra": {
            "examples": [{"source": "shop", "type": "orders/create", "payload": {"name": "#1"}}]
        }
    }

    @property
    def target(self) -> StoredEvent | InlineEvent:
        root = self.root
        return root.event if isinstance(root, NestedEvent) else root
