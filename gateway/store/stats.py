"""What the dashboard's overview charts: events by source per time bucket, runs by status,
model usage per rule per day, and how long an event waits for its first action.

Counting happens in the database (grouped by bucket), so a week of events is a few hundred rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, cast, func, select

from gateway.store.part import Part
from gateway.store.records import utc
from gateway.store.schema import events, runs, steps
from gateway.store.status import RunStatus

# Event → first action latencies read for the percentiles: the most recent this many runs.
LATENCY_SAMPLE = 10_000


class Stats(Part):
    """`StatsStore`: aggregate reads for the overview page, no writes."""

    def _bucket(self, column: Any, seconds: int) -> Any:
        """The start of `column`'s bucket of `seconds`, as seconds since the epoch."""
        if self.dialect.name == "postgresql":
            epoch: Any = func.floor(func.extract("epoch", column) / seconds)
        else:
            epoch = cast(func.strftime("%s", column), Integer) // seconds
        return (epoch * seconds).label("bucket")

    async def events_by_source(
        self, since: datetime, bucket_seconds: int
    ) -> list[tuple[datetime, str, int]]:
        bucket = self._bucket(events.c.received_at, bucket_seconds)
        query = (
            select(bucket, events.c.source, func.count())
            .where(events.c.received_at >= since.astimezone(UTC))
            .group_by(bucket, events.c.source)
            .order_by(bucket)
        )
        return [
            (datetime.fromtimestamp(int(at), UTC), source, int(count))
            for at, source, count in map(tuple, await self._rows(query))
        ]

    async def runs_by_status(self, since: datetime) -> dict[RunStatus, int]:
        query = (
            select(runs.c.status, func.count())
            .where(runs.c.created_at >= since.astimezone(UTC))
            .group_by(runs.c.status)
        )
        return {RunStatus(status): int(n) for status, n in map(tuple, await self._rows(query))}

    async def usage_by_rule_day(
        self, since: datetime
    ) -> list[tuple[datetime, str, int, int, float]]:
        day = self._bucket(runs.c.created_at, 86_400)
        query = (
            select(
                day,
                runs.c.rule,
                func.sum(runs.c.input_tokens),
                func.sum(runs.c.output_tokens),
                func.sum(runs.c.cost),
            )
            .where(runs.c.created_at >= since.astimezone(UTC), runs.c.kind == "assistant")
            .group_by(day, runs.c.rule)
            .order_by(day, runs.c.rule)
        )
        return [
            (datetime.fromtimestamp(int(at), UTC), rule, int(i or 0), int(o or 0), float(c or 0))
            for at, rule, i, o, c in map(tuple, await self._rows(query))
        ]

    async def action_latencies(self, since: datetime) -> list[float]:
        """Seconds from an event's arrival to its run's first tool call, for the runs created
        since `since` that made one (the most recent `LATENCY_SAMPLE`)."""
        first = (
            select(steps.c.run_id, func.min(steps.c.started_at).label("at"))
            .where(steps.c.kind == "tool")
            .group_by(steps.c.run_id)
            .subquery()
        )
        query = (
            select(events.c.received_at, first.c.at)
            .select_from(
                runs.join(events, events.c.id == runs.c.event_id).join(
                    first, first.c.run_id == runs.c.id
                )
            )
            .where(runs.c.created_at >= since.astimezone(UTC))
            .order_by(runs.c.id.desc())
            .limit(LATENCY_SAMPLE)
        )
        found = []
        for received, acted in map(tuple, await self._rows(query)):
            delta: timedelta = utc(acted) - utc(received)  # type: ignore[operator]
            found.append(max(0.0, delta.total_seconds()))
        return found
