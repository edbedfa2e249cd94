"""Reading operator input (path ids, query strings, JSON bodies) into models, or a 422.

Bad input is the caller's error: it becomes `InvalidInput`, never an exception deeper down.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

# Defined in gateway.errors (the whole tree in one module), imported from here too.
from gateway.errors import InvalidInput as InvalidInput
from gateway.errors import OutOfRange as OutOfRange

MAX_ID = 2**63 - 1  # the largest id a store column holds; a larger one names nothing
MAX_LIMIT = 1000
MAX_BODY = 1024 * 1024

M = TypeVar("M", bound=BaseModel)


def record_id(request: Request, name: str = "id") -> int:
    value = request.path_params[name]
    if not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise OutOfRange(str(value))
    return value


def parse(model: type[M], data: Any) -> M:
    """`data` as `model`, or InvalidInput with a line per problem: the model's own line for a
    field (its `PROBLEMS`), else the validator's message."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        said: dict[str, str] = getattr(model, "PROBLEMS", {})
        problems: list[str] = []
        for error in exc.errors(include_url=False):
            # A union's variant names its branch in `loc` too: the field is the first name
            # the model has a line for.
            names = [str(part) for part in error["loc"] if isinstance(part, str)]
            field = next((name for name in names if name in said), None)
            line = f"{field}: {said[field]}" if field else f"{'.'.join(names)}: {error['msg']}"
            if line not in problems:
                problems.append(line)
        raise InvalidInput(problems) from None


def query(model: type[M], request: Request) -> M:
    """The request's query parameters as `model`; an empty value counts as absent."""
    given = {name: value for name, value in request.query_params.items() if value != ""}
    return parse(model, given)


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
