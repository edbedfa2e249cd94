"""Ingest reads a body's nesting depth from its bytes; it must agree with the walk of its value."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import MalformedPayload
from gateway.nesting import body_deeper_than, check_depth, deeper_than

# Strings full of what could fool a reader of bytes: brackets, quotes, backslashes, escapes.
TRICKY = st.sampled_from(["[", "]", "{", "}", '"', "\\", '\\"', '"]', "\\\\", "\\[", "é", "x"])
TEXT = st.lists(TRICKY, max_size=6).map("".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None)
@given(value=JSON, limit=st.integers(min_value=1, max_value=8))
def test_the_depth_read_from_the_bytes_is_the_depth_of_the_value(value: Any, limit: int) -> None:
    body = orjson.dumps(value)
    assert body_deeper_than(body, limit) == deeper_than(value, limit)


def _nested(levels: int) -> bytes:
    value: Any = 'a "]]}}" \\ string'
    for level in range(levels):
        value = [value] if level % 2 else {'k"]}': value}
    return orjson.dumps(value)


@pytest.mark.parametrize(("levels", "refused"), [(63, False), (64, False), (65, True)])
def test_ingest_refuses_a_body_one_level_deeper_than_the_limit(levels: int, refused: bool) -> None:
    body = _nested(levels)
    if refused:
        with pytest.raises(MalformedPayload):
            check_depth(orjson.loads(body), 64, body)
    else:
        check_depth(orjson.loads(body), 64, body)


def test_brackets_inside_strings_do_not_count() -> None:
    body = b'{"a": "[[[[[[[[[[", "b": "]]]]]]]]]]\\"{{{{{{"}'
    assert not body_deeper_than(body, 1)
    assert body_deeper_than(b'{"a": [1]}', 1)
