"""The Starlette application: webhook ingest, health and metrics, wired to one store.

`create_app` is the single place where the gateway's parts are put together.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

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
    worker = Worker(store, rules, config) if "worker" in roles else None
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
