"""How deep a JSON value nests, measured without recursion, and the two limits on it.

Ingest refuses a body nested deeper than `max_json_depth`; every reader of stored bodies
treats one deeper than `READABLE_DEPTH` (stored before the limit existed) as opaque text.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import MalformedPayload

READABLE_DEPTH = 128
"""The deepest value every reader handles: the API's redactor and Jinja's `tojson` recurse
(one or two Python frames a level, against a limit of 1,000), and orjson writes at most 254
levels. `max_json_depth` may not be set above it, so what ingest accepts every reader reads."""


_CONTAINERS = frozenset({dict, list})


def deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays in `value`, as JSON decoding makes them (`dict` and `list`),
    nest more than `limit` levels deep.

    Walked a level at a time, never recursively, and never past `limit + 1` levels: a hostile
    value cannot exhaust the stack, nor cost more than one pass over what it holds.
    """
    level = [value] if type(value) in _CONTAINERS else []
    for _ in range(limit):
        if not level:
            return False
        below: list[Any] = []
        for node in level:
            # Exact types, not isinstance: about twice as fast, and on the request path.
            items = node.values() if type(node) is dict else node
            below.extend([child for child in items if type(child) in _CONTAINERS])
        level = below
    return bool(level)


def check_depth(payload: Any, limit: int, body: bytes | None = None) -> None:
    """Raise `MalformedPayload` if `payload` (parsed from `body`, if given) nests deeper than
    `limit`: the one check of ingest and of the rule tester's made-up events."""
    # Nesting deeper than the body has brackets is impossible: most bodies are settled by
    # this count (done in C) without the walk.
    if body is not None and body.count(b"{") + body.count(b"[") <= limit:
        return
    if deeper_than(payload, limit):
        raise MalformedPayload(f"the body nests deeper than {limit} levels (max_json_depth)")
