"""Reading operator input (query strings, JSON bodies, path ids) into typed values, or a 422.

Bad input is the caller's error: it becomes `InvalidInput`, never an exception deeper down.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request

from gateway.errors import GatewayError

MAX_ID = 2**63 - 1  # the largest id a store column holds; a larger one names nothing
MAX_LIMIT = 1000
MAX_BODY = 1024 * 1024


class InvalidInput(GatewayError):
    """The request's parameters or body are not what the endpoint takes; `problems` says why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class OutOfRange(GatewayError):
    """A path id no record can have (e.g. beyond 64 bits): answered as not found."""


def record_id(request: Request, name: str = "id") -> int:
    value = request.path_params[name]
    if not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise OutOfRange(str(value))
    return value


def text(request: Request, name: str, *, max_length: int = 200) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_length or "\x00" in value:
        raise InvalidInput([f"{name}: at most {max_length} characters, no NUL"])
    return value


def integer(
    request: Request, name: str, *, default: int | None, low: int = 1, high: int = MAX_ID
) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput([f"{name}: not an integer: {value[:40]!r}"]) from None
    if not low <= number <= high:
        raise InvalidInput([f"{name}: must be between {low} and {high}"])
    return number


def timestamp(request: Request, name: str) -> datetime | None:
    """An ISO 8601 time; without a zone it is UTC."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput([f"{name}: not an ISO 8601 date-time: {value[:40]!r}"]) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidInput([f"{name}: out of range"]) from None


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object; an empty body is `{}` unless `required`."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidInput([f"body: larger than {MAX_BODY} bytes"])
    if not raw.strip():
        if required:
            raise InvalidInput(["body: a JSON object is required"])
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput([f"body: invalid JSON: {exc}"]) from None
    if not isinstance(value, dict):
        raise InvalidInput(["body: must be a JSON object"])
    return value
