"""The Starlette application: webhook ingest, health and metrics, wired to one store.

`create_app` is the single place where the gateway's parts are put together.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway import __version__
from gateway.assistant.loop import AssistantRunner
from gateway.config import Config
from gateway.ingest.endpoint import IngestEndpoint
from gateway.metrics import Metrics
from gateway.rules.loader import RuleSet
from gateway.rules.loader import load as load_rules
from gateway.store import Store
from gateway.worker import Worker

log = structlog.get_logger(__name__)
ROLES = frozenset({"ingest", "worker", "scheduler"})


def create_app(
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    migrate: bool = True,
    rules: RuleSet | None = None,
    roles: frozenset[str] = ROLES,
) -> Starlette:
    """The gateway for `config`; raises `ConfigError` (every problem) on a bad rule file."""
    if rules is None:
        rules = load_rules(config.rules_dir)
    store = Store(config.store_url)
    metrics = Metrics()
    ingest = IngestEndpoint(config, store, metrics, clock)
    worker = Worker(store, rules, config, metrics=metrics) if "worker" in roles else None
    assistants = None
    if worker is not None and (config.models or any(r.assistant for r in rules.rules)):
        assistants = AssistantRunner(config)
        assistants.bind(worker)
    if worker is not None:
        # New events wake the worker the moment they are committed.
        store.writer.on_commit(worker.notify_events)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open(migrate=migrate)
        try:
            if worker is not None:
                await worker.start()
            yield
        finally:
            if worker is not None:
                await worker.stop()
            if assistants is not None:
                await assistants.close()
            await store.close()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> Response:
        if await store.ping():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "store unavailable"}, status_code=503)

    async def metrics_endpoint(request: Request) -> Response:
        try:
            now = datetime.now(UTC)
            for queue, (count, oldest) in (await store.queue_stats()).items():
                metrics.queue_depth.labels(queue).set(count)
                age = (now - oldest).total_seconds() if oldest else 0.0
                metrics.queue_age.labels(queue).set(max(0.0, age))
        except Exception as exc:  # the store is down: /readyz says so; metrics still answer
            log.warning("metrics.queue_stats_failed", error=str(exc))
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(
        routes=[
            Route("/hooks/{source}", ingest, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
        ],
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.store = store
    app.state.metrics = metrics
    app.state.rules = rules
    app.state.worker = worker
    return app
