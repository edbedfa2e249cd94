"""One Retry-After parser and one backoff for the whole gateway (gateway.backoff)."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from gateway.backoff import backoff, parse_retry_after, retry_after


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("12", 12.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-3", None),  # delta-seconds are never negative
        ("nan", None),
        ("inf", None),
        ("Mon, 01 Jan 2001 00:00:00 GMT", 0.0),  # a date passed: no wait
    ],
)
def test_retry_after_header_values(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_retry_after_as_an_http_date_is_the_time_until_it() -> None:
    waited = parse_retry_after(formatdate(time.time() + 30, usegmt=True))

    assert waited is not None and 28 <= waited <= 30


def test_retry_after_ms_is_read_first() -> None:
    assert retry_after({"retry-after-ms": "1500", "retry-after": "7"}) == 1.5
    assert retry_after({"retry-after-ms": "soon", "retry-after": "7"}) == 7.0
    assert retry_after({}) is None


def test_backoff_doubles_up_to_its_ceiling_with_jitter_in_the_upper_half() -> None:
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (10, 8.0)]:
        waits = [backoff(attempt, base=0.5, ceiling=8.0) for _ in range(50)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
