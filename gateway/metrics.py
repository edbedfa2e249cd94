"""Prometheus metrics, one registry per app so several apps can live in one process (tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "gateway_webhook_requests",
            "Webhook requests by source and HTTP status",
            ["source", "status"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "gateway_webhook_rejections",
            "Webhook requests refused, by source and reason",
            ["source", "reason"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "gateway_webhook_duplicates",
            "Redeliveries answered without storing anything new",
            ["source"],
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            "gateway_ingest_seconds",
            "Time from first body byte to the answer, for stored events",
            ["source"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
