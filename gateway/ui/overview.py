"""The dashboard's landing page: what came in, what ran, what waits, what it cost, how fast.

Counts come from `store.stats` (every replica's work); ingest latency from this replica's
Prometheus histogram (the store does not time requests). Time ranges: hour, day, week.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.store import Store
from gateway.store.status import RunStatus
from gateway.ui import charts


@dataclass(frozen=True)
class Range:
    """A time range of the overview: how far back, and the width of one bar."""

    name: str
    span: timedelta
    bucket: int  # seconds
    time_format: str


RANGES = {
    "hour": Range("hour", timedelta(hours=1), 60, "%H:%M"),
    "day": Range("day", timedelta(days=1), 30 * 60, "%H:%M"),
    "week": Range("week", timedelta(days=7), 6 * 3600, "%a %H:%M"),
}


def bucket_label(seconds: int) -> str:
    return (
        "minute"
        if seconds == 60
        else f"{seconds // 60} min"
        if seconds < 3600
        else (f"{seconds // 3600} h")
    )


async def overview(
    store: Store, range_name: str, metrics: Any | None, now: datetime | None = None
) -> dict[str, Any]:
    """The overview's context for its template, over the range named (hour if unknown)."""
    chosen = RANGES.get(range_name, RANGES["hour"])
    now = now or datetime.now(UTC)
    since = now - chosen.span
    # Whole buckets, the last one holding now: bars do not shift as the page refreshes.
    first = since.timestamp() // chosen.bucket * chosen.bucket
    starts = [
        datetime.fromtimestamp(first + i * chosen.bucket, UTC)
        for i in range(int((now.timestamp() - first) // chosen.bucket) + 1)
    ]
    index = {start: i for i, start in enumerate(starts)}
    by_source: dict[str, list[float]] = {}
    total = 0
    for start, source, count in await store.stats.events_by_source(starts[0], chosen.bucket):
        if start in index:
            by_source.setdefault(source, [0.0] * len(starts))[index[start]] += count
            total += count
    statuses = await store.stats.runs_by_status(since)
    usage = await store.stats.usage_by_rule_day(min(since, now - timedelta(days=7)))
    latencies = sorted(await store.stats.action_latencies(since))
    per = bucket_label(chosen.bucket)
    return {
        "range": chosen.name,
        "ranges": list(RANGES),
        "events_total": total,
        "sources": [
            (name, charts.colour(i), sum(v)) for i, (name, v) in enumerate(by_source.items())
        ],
        "events_chart": charts.stacked_bars(
            starts, by_source, label=f"events per {per} by source", time_format=chosen.time_format
        ),
        "per": per,
        "runs_chart": charts.horizontal_bars(
            {status.value: statuses.get(status, 0) for status in _SHOWN}, label="runs by status"
        ),
        "runs_total": sum(statuses.values()),
        "dead": await store.runs.count(RunStatus.DEAD),
        "awaiting": await store.runs.count(RunStatus.AWAITING_APPROVAL),
        "usage": _usage(usage),
        "action": _percentiles(latencies),
        "ingest": _ingest_percentiles(metrics),
        "now": now,
    }


_SHOWN = [
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.DEAD,
    RunStatus.AWAITING_APPROVAL,
    RunStatus.RUNNING,
    RunStatus.PENDING,
]


def _usage(rows: list[tuple[datetime, str, int, int, float]]) -> dict[str, Any]:
    """Tokens and cost per rule per day (the last seven days), as a table and a cost chart."""
    days = sorted({day for day, *_ in rows})
    rules = sorted({rule for _, rule, *_ in rows})
    cost = {rule: [0.0] * len(days) for rule in rules}
    for day, rule, _, _, spent in rows:
        cost[rule][days.index(day)] += spent
    return {
        "rows": [
            {"day": day, "rule": rule, "input": i, "output": o, "cost": c}
            for day, rule, i, o, c in sorted(rows, key=lambda r: (r[0], r[1]), reverse=True)
        ],
        "chart": charts.stacked_bars(
            days, cost, label="model cost (USD) per rule per day", time_format="%a %d"
        )
        if days
        else None,
        "rules": [(rule, charts.colour(i)) for i, rule in enumerate(rules)],
    }


def _percentiles(values: list[float]) -> dict[str, Any]:
    """p50 and p99 of sorted `values` (nearest rank), with how many there were."""
    if not values:
        return {"count": 0, "p50": None, "p99": None}

    def rank(q: float) -> float:
        return values[min(len(values) - 1, max(0, int(q * len(values) + 0.5) - 1))]

    return {"count": len(values), "p50": rank(0.50), "p99": rank(0.99)}


def _ingest_percentiles(metrics: Any | None) -> dict[str, Any]:
    """p50 and p99 of ingest time from this replica's histogram: the upper bound of the bucket
    each falls in (`≤ 5 ms`), as Prometheus' buckets allow no finer answer."""
    if metrics is None:
        return {"count": 0, "p50": None, "p99": None}
    counts: dict[float, float] = {}
    for family in metrics.ingest_seconds.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                counts[le] = counts.get(le, 0.0) + sample.value
    bounds = sorted(counts)
    total = counts.get(float("inf"), 0.0)
    if not total:
        return {"count": 0, "p50": None, "p99": None}

    def bound(q: float) -> float:
        return next(b for b in bounds if counts[b] >= q * total)

    return {"count": int(total), "p50": bound(0.50), "p99": bound(0.99)}
