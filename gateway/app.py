"""The Starlette application: webhook ingest, health and metrics, wired to one store.

`create_app` is the single place where the gateway's parts are put together.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway import __version__, operations, tracing
from gateway.api import api_routes
from gateway.assistant.runner import AssistantRunner
from gateway.config import Config
from gateway.ingest.endpoint import IngestEndpoint
from gateway.mcp.endpoint import McpEndpoint
from gateway.metrics import Metrics
from gateway.ruleset import load_ruleset
from gateway.runs.executor import ExecutorFactory
from gateway.scheduler import Scheduler
from gateway.server import BodyLimit
from gateway.store import Store
from gateway.store.notify import Notifier
from gateway.ui import ui_routes
from gateway.worker import Worker

log = structlog.get_logger(__name__)
ROLES = frozenset({"ingest", "worker", "scheduler"})


def create_app(
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    migrate: bool = True,
    roles: frozenset[str] = ROLES,
    reload_on_hangup: bool = False,
) -> Starlette:
    """The gateway for `config`; raises `ConfigError` (every problem) on a bad rule file.

    With `reload_on_hangup` (the `gateway serve` process, whose main thread runs the loop),
    SIGHUP reloads the rules as the admin API does.
    """
    rules = load_ruleset(config)
    if config.tracing:
        tracing.configure(config.tracing)
    store = Store(config.store_url)
    metrics = Metrics()
    ingest = IngestEndpoint(config, store, metrics, clock)
    # PostgreSQL: other replicas' workers wake on NOTIFY; SQLite: one worker process per file.
    notifier = Notifier(config.store_url) if store.dialect.skip_locked else None
    executors: dict[str, ExecutorFactory] = {}
    if config.models or any(r.assistant for r in rules.rules):
        executors["assistant"] = AssistantRunner.factory(config)
    worker = (
        Worker(
            store,
            rules,
            config,
            executors=executors,
            metrics=metrics,
            notify=notifier.notify_soon if notifier is not None else None,
        )
        if "worker" in roles
        else None
    )
    if worker is not None:
        # New events wake the worker the moment they are committed.
        store.events.on_commit(worker.notify_events)
    # Fires scheduled rules into the store; validates every schedule now (ConfigError).
    scheduler = (
        # Also with no scheduled rule yet: a rule reload may bring one.
        Scheduler(store, rules.scheduled) if "scheduler" in roles else None
    )
    if notifier is not None:
        store.events.on_commit(notifier.notify_soon)
    lock = store.worker_lock() if worker is not None else None
    # The gateway's own MCP endpoint (`mcp_server:`), off unless configured.
    agents = McpEndpoint(config.mcp_server, lambda: app.state) if config.mcp_server else None

    # Windows has no SIGHUP.
    hangup = getattr(signal, "SIGHUP", None) if reload_on_hangup else None
    reloads: set[asyncio.Task[None]] = set()

    def reload_on_signal() -> None:
        task = asyncio.get_running_loop().create_task(operations.reload_rules_on_signal(app.state))
        reloads.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(reloads.discard)

    def wake() -> None:
        if worker is not None:
            worker.notify_events()
            worker.notify_runs()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if lock is not None:
            lock.acquire()
        try:
            await store.open(migrate=migrate)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        try:
            if worker is not None:
                await worker.start()
                if notifier is not None:
                    notifier.start(wake)
            if scheduler is not None:
                await scheduler.start()
            if hangup is not None:
                asyncio.get_running_loop().add_signal_handler(hangup, reload_on_signal)
            if agents is not None:
                await agents.start()
            yield
        finally:
            if agents is not None:
                await agents.stop()
            if hangup is not None:
                asyncio.get_running_loop().remove_signal_handler(hangup)
            if scheduler is not None:
                await scheduler.stop()
            if notifier is not None:
                await notifier.stop()
            if worker is not None:
                await worker.stop()
            await store.close()
            if lock is not None:
                lock.release()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> Response:
        if await store.ping():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "store unavailable"}, status_code=503)

    async def metrics_endpoint(request: Request) -> Response:
        try:
            now = datetime.now(UTC)
            for queue, (count, oldest) in (await store.runs.queue_stats()).items():
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
            # The admin API and dashboard: present only when `admin_token` is configured.
            *api_routes(config),
            *ui_routes(config),
            *(agents.routes() if agents is not None else []),
        ],
        lifespan=lifespan,
        # Every body but a webhook's (IngestEndpoint has `max_body_bytes`) is capped as it is read.
        middleware=[
            Middleware(BodyLimit, max_bytes=config.server.max_body_bytes, exempt="/hooks/")
        ],
    )
    app.state.config = config
    app.state.store = store
    app.state.metrics = metrics
    app.state.rules = rules
    app.state.worker = worker
    app.state.scheduler = scheduler
    return app
