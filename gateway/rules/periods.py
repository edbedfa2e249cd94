"""Calendar periods around a firing (yesterday, last week, last month) in the rule's zone.

Rule templates get `periods(event.fired_at, zone)` to ask for "last week's sales" exactly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


def periods(fired_at: datetime | str, tz: str = "UTC") -> dict[str, dict[str, str]]:
    """`today`, `yesterday`, `this_week`, `last_week`, `this_month`, `last_month` of `fired_at`.

    Each period is half-open, from local midnight to local midnight in zone `tz` (weeks start on
    Monday), given as `start`/`end` (ISO datetimes with the local offset), `start_utc`/`end_utc`,
    `start_date`/`end_date` (ISO dates, `end_date` excluded) and `last_date` (the last day in it).
    """
    if isinstance(fired_at, str):
        fired_at = datetime.fromisoformat(fired_at)
    if fired_at.tzinfo is None:
        fired_at = fired_at.replace(tzinfo=UTC)
    zone = ZoneInfo(tz)
    today = fired_at.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    first = today.replace(day=1)
    previous_first = (first - timedelta(days=1)).replace(day=1)
    next_first = (first + timedelta(days=31)).replace(day=1)
    bounds = {
        "today": (today, today + timedelta(days=1)),
        "yesterday": (today - timedelta(days=1), today),
        "this_week": (monday, monday + timedelta(days=7)),
        "last_week": (monday - timedelta(days=7), monday),
        "this_month": (first, next_first),
        "last_month": (previous_first, first),
    }
    return {name: _period(start, end, zone) for name, (start, end) in bounds.items()}


def _period(start: date, end: date, zone: ZoneInfo) -> dict[str, str]:
    # Midnight as a wall time: the offset is the one in force that day, across DST changes.
    begin = datetime(start.year, start.month, start.day, tzinfo=zone)
    finish = datetime(end.year, end.month, end.day, tzinfo=zone)
    return {
        "start": begin.isoformat(),
        "end": finish.isoformat(),
        "start_utc": begin.astimezone(UTC).isoformat(),
        "end_utc": finish.astimezone(UTC).isoformat(),
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "last_date": (end - timedelta(days=1)).isoformat(),
    }
