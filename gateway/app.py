"""The Starlette application: the routes of webhook ingest, health, metrics, API and dashboard.

The parts behind them are the `Gateway` runtime's (`gateway.runtime`); handlers reach it as
`app.state.gateway` (`gateway.api.gateway_of` from a mounted sub-app).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import __version__
from gateway.allocator import Trimmer
from gateway.config import Config
from gateway.retention.disk import Probe, free_bytes
from gateway.runs.shutdown import RefuseWhenDraining
from gateway.runtime import ROLES, Gateway
from gateway.server import BodyLimit

if TYPE_CHECKING:
    from gateway.agents.endpoint import McpEndpoint

__all__ = ["ROLES", "GatewayApp", "create_app"]
log = structlog.get_logger(__name__)
HOOKS = "/hooks/"


class GatewayApp(Starlette):
    """The gateway's Starlette app, with one shortcut: `POST /hooks/{source}` goes straight to
    `hooks`, the endpoint its route names, past the router and the middleware.

    That path is the one under load, and every layer there was measured (bench/ingest, py-spy)
    to cost a share of a request that verifies, parses and stores a 7 KB body; none of them acts
    on it (the body cap exempts /hooks/, the endpoint answers its own errors). Whatever is not
    exactly `POST /hooks/<one segment>` (another method, a deeper path, a mounted root path)
    takes the route, so the router still answers 405, 404 and redirects as before.
    """

    def __init__(self, *, hooks: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hooks = hooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        source = direct_source(scope)
        if source is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        scope["path_params"] = {"source": source}
        await self.hooks(scope, receive, send)


def direct_source(scope: Scope) -> str | None:
    """The source of a request the route `/hooks/{source}` (POST) would take, else None."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not path.startswith(HOOKS):
        return None
    source = path[len(HOOKS) :]
    # Starlette's `{source}` matches one non-empty path segment, nothing else.
    return source if source and "/" not in source else None


def admin_routes(config: Config) -> list[BaseRoute]:
    """The admin API (`/api`) and the dashboard (`/ui`): only when `admin_token` is configured,
    and only then imported (their models, endpoints and templates are ~3 MB resident)."""
    if not config.admin_token:
        return []
    from gateway.api import api_routes
    from gateway.ui import ui_routes

    return [*api_routes(config), *ui_routes(config)]


def create_app(
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    migrate: bool = True,
    roles: frozenset[str] = ROLES,
    reload_on_hangup: bool = False,
    trim_memory: bool = False,
    disk_probe: Probe = free_bytes,
) -> Starlette:
    """The gateway for `config`; raises `ConfigError` (every problem) on a bad rule file.

    With `reload_on_hangup` (the `gateway serve` process, whose main thread runs the loop),
    SIGHUP reloads the rules as the admin API does. With `trim_memory` (that process too), the
    memory a burst of work freed is given back to the system once it is over (`allocator`).
    """
    gateway = Gateway(config, clock=clock, disk_probe=disk_probe)
    # The gateway's own MCP endpoint (`mcp_server:`), off unless configured.
    agents: McpEndpoint | None = None
    if config.mcp_server:  # imported only when configured: the MCP SDK is tens of MB resident
        from gateway.agents.endpoint import McpEndpoint

        agents = McpEndpoint(config.mcp_server, lambda: gateway)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start(roles, migrate=migrate)
        trimmer = Trimmer() if trim_memory else None
        if trimmer is not None:
            trimmer.start()
        unhook = gateway.reload_on_hangup() if reload_on_hangup else None
        if reload_on_hangup:  # the serve process: SIGTERM drains before uvicorn stops it
            gateway.shutdown.install(asyncio.get_running_loop())
        try:
            if agents is not None:
                await agents.start()
            yield
        finally:
            if agents is not None:
                await agents.stop()
            if unhook is not None:
                unhook()
            if trimmer is not None:
                await trimmer.stop()
            gateway.shutdown.uninstall()
            await gateway.stop()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> Response:
        if gateway.shutdown.draining:  # first, so a balancer stops sending before we stop taking
            return JSONResponse({"status": "shutting down"}, status_code=503)
        if problem := gateway.retention.unready():
            return JSONResponse({"status": problem}, status_code=503)
        for companion in gateway.companions:
            if problem := companion.unready():
                return JSONResponse({"status": problem}, status_code=503)
        if await gateway.store.ping():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "store unavailable"}, status_code=503)

    async def metrics_endpoint(request: Request) -> Response:
        try:
            await gateway.update_queue_metrics()
            await gateway.retention.observe()
        except Exception as exc:  # the store is down: /readyz says so; metrics still answer
            log.warning("metrics.queue_stats_failed", error=str(exc))
        return PlainTextResponse(gateway.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    hooks = RefuseWhenDraining(gateway.shutdown, gateway.ingest)
    app = GatewayApp(
        hooks=hooks,
        routes=[
            Route("/hooks/{source}", hooks, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            *admin_routes(config),
            *(agents.routes() if agents is not None else []),
        ],
        lifespan=lifespan,
        # Every body but a webhook's (IngestEndpoint has `max_body_bytes`) is capped as it is read.
        middleware=[
            Middleware(BodyLimit, max_bytes=config.server.max_body_bytes, exempt="/hooks/")
        ],
    )
    app.state.gateway = gateway
    return app
