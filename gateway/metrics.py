"""Prometheus metrics, one registry per app so several apps can live in one process (tests).

With worker processes (`gateway serve --processes N`, gateway.metrics_sharing) the values are
kept in files and /metrics reads every process's: counters and histograms are summed, each
gauge is combined as its `multiprocess_mode` says (ignored in a single process).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.metrics_sharing import shared

# Label children kept per metric, at most (a rule or tool name is a label; they are few).
CHILDREN_MAX = 4096


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
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
            "Redeliveries (same signed content, same delivery id) answered without storing",
            ["source"],
            registry=self.registry,
        )
        self.replays = Counter(
            "gateway_webhook_replays",
            "Signed content already stored, sent again under another delivery id: not stored",
            ["source"],
            registry=self.registry,
        )
        self.stale_retries = Counter(
            "gateway_webhook_stale_retries",
            "Events stored from a retry that came later than the provider's stale_after",
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
        self.thin_fetches = Counter(
            "gateway_thin_fetches",
            "Fetches of thin events' full objects, by source and outcome (fetched, retry, failed)",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.runs = Counter(
            "gateway_runs",
            "Runs that ended, by rule and final status (succeeded, failed, dead)",
            ["rule", "status"],
            registry=self.registry,
        )
        self.retries = Counter(
            "gateway_run_retries",
            "Runs put back to wait for another attempt, by rule",
            ["rule"],
            registry=self.registry,
        )
        self.step_seconds = Histogram(
            "gateway_step_seconds",
            "Duration of tool calls, by tool and outcome",
            ["tool", "outcome"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.model_tokens = Counter(
            "gateway_model_tokens",
            "Tokens used by assistants, by rule, model and direction (input/output)",
            ["rule", "model", "direction"],
            registry=self.registry,
        )
        self.model_cost = Counter(
            "gateway_model_cost_usd",
            "Model cost in USD (from the configured price table), by rule and model",
            ["rule", "model"],
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "gateway_model_turn_seconds",
            "Duration of model turns (including the backend's own retries), by model",
            ["model"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=self.registry,
        )
        self.circuit_open = Gauge(
            "gateway_circuit_open",
            "1 while a downstream's circuit is open (its runs wait), 0 once a probe closed it",
            ["downstream"],
            registry=self.registry,
            multiprocess_mode="max",  # open in any worker process
        )
        self.budget_reached = Counter(
            "gateway_budget_reached_total",
            "Assistant runs stopped by a daily budget before a model turn (alert on it)",
            ["rule", "scope"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "gateway_queue_depth",
            "Work waiting: pending events, pending runs, runs awaiting approval, runs waiting "
            "for an open circuit, thin events being fetched",
            ["queue"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.queue_age = Gauge(
            "gateway_queue_oldest_seconds",
            "Age of the oldest waiting item, by queue",
            ["queue"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.store_bytes = Gauge(
            "gateway_store_bytes",
            "Bytes the store's database takes",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.disk_free = Gauge(
            "gateway_disk_free_bytes",
            "Free bytes on the file system of a SQLite store",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.disk_low = Gauge(
            "gateway_disk_below_floor",
            "1 while free disk space is under retention.min_free_bytes (webhooks answered 503)",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.store_writes = Histogram(
            "gateway_store_write_seconds",
            "SQLite's one write lock, per commit of the event writer (events) and the journal:"
            " the wait for it and the hold (the event writer's: its INSERT call, at most)",
            ["writer", "phase"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5, 10.0),
            registry=self.registry,
        )
        self.pruned = Counter(
            "gateway_pruned",
            "History removed by the retention job: bodies, runs, event_rows, threads, pages",
            ["kind"],
            registry=self.registry,
        )
        self.reconciled = Counter(
            "gateway_reconciled_events",
            "Events reconciliation stored or had redelivered, found missing at the provider",
            ["source"],
            registry=self.registry,
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, kept: the worker counts every run and step, and looking a
        child up validates and locks each time."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            if len(self._children) >= CHILDREN_MAX:
                self._children.clear()
            found = self._children[key] = metric.labels(*labels)
        return found

    def store_write(self, writer: str, waited: float, held: float) -> None:
        """One turn of SQLite's write lock (`Store.observe_writes`), on the writer's thread."""
        self.child(self.store_writes, writer, "wait").observe(waited)
        self.child(self.store_writes, writer, "hold").observe(held)

    def exposition(self) -> bytes:
        """What /metrics answers: this registry, or every process's metrics where they are
        shared (the door of `gateway serve --processes N`)."""
        if not shared():
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        everyone = CollectorRegistry()
        MultiProcessCollector(everyone)  # type: ignore[no-untyped-call]  # untyped upstream
        return generate_latest(everyone)

    def circuit_changed(self, downstream: str, is_open: bool) -> None:
        self.circuit_open.labels(downstream).set(1 if is_open else 0)
