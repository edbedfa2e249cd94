"""How `gateway check` words and orders problems: a suggestion for a mistyped name, every
problem in one pass (a partly valid block is still checked), and problems in line order.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

M = TypeVar("M", bound=BaseModel)
_WHERE = re.compile(r"^(?P<file>.*?):(?P<line>\d+): ")


def did_you_mean(name: object, known: Iterable[str]) -> str:
    """` (did you mean 'when'?)` for the closest of `known`, or nothing if none is close."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def message(model: type[BaseModel], error: ErrorDetails) -> str:
    """Pydantic's message, but an unknown key names the closest key the block takes."""
    loc = tuple(error["loc"])
    if error["type"] != "extra_forbidden" or not loc:
        return error["msg"]
    known = _keys(_model_at(model, loc[:-1]))
    if not known:
        return error["msg"]
    hint = did_you_mean(loc[-1], known)
    return f"unknown key {loc[-1]!r}" + (hint or f" (it takes {', '.join(known)})")


def partial(model: type[M], raw: Any) -> M | None:
    """`model` built from the fields of `raw` that are valid on their own (the rest left at
    their defaults, no model validator run), so checks of the valid parts still run in the
    same pass as the errors of the invalid ones. None if `raw` is not a mapping."""
    if not isinstance(raw, dict):
        return None
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias if info.alias in raw else name
        if key not in raw:
            continue
        try:
            values[name] = TypeAdapter[Any](info.annotation or Any).validate_python(raw[key])
        except ValidationError:
            continue
    return model.model_construct(**values)


def in_line_order(problems: Iterable[str]) -> list[str]:
    """Problems by file (in the order files first appear), then by line; stable otherwise."""
    listed = list(problems)
    files: dict[str, int] = {}
    keys = []
    for problem in listed:
        match = _WHERE.match(problem)
        file = match["file"] if match else problem.partition(":")[0]
        files.setdefault(file, len(files))
        keys.append((files[file], int(match["line"]) if match else 0))
    order = sorted(range(len(listed)), key=lambda i: keys[i])
    return [listed[i] for i in order]


def _model_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class of the block at `path` inside `model`, if one is."""
    current: Any = model
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {info.alias or name: info for name, info in current.model_fields.items()}
            info = fields.get(part) or current.model_fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
        elif get_origin(current) in (list, dict):
            current = get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """`X | None` and `Annotated[X, ...]` as `X`."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            inner = [a for a in get_args(annotation) if a is not type(None)]
            if len(inner) != 1:
                return annotation
            annotation = inner[0]
        else:
            return annotation


def _keys(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items() if not info.exclude]
