"""`gateway serve` and `gateway version`: run the gateway, say which one it is."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gateway import terminal
from gateway.cli.common import ConfigOption, app, console, err, load_config, problems
from gateway.config import MAX_PROCESSES
from gateway.errors import ConfigError


def _print_version(wanted: bool) -> None:
    if wanted:
        version()
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Webhook-to-assistant automation gateway."""


@app.command()
def version() -> None:
    """Print the gateway's version and the commit it was built from."""
    from gateway.build import describe

    console.print(describe(), highlight=False)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default from config)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default from config)")] = None,
    migrate: Annotated[bool, typer.Option(help="Apply schema migrations at start")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
    role: Annotated[
        list[str] | None,
        typer.Option(help="all (default), ingest, worker or scheduler; repeatable"),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_PROCESSES,
            help="N > 1: the worker and scheduler in N - 1 more processes on the same store, "
            "splitting worker.concurrency (default from config, server.processes)",
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Listen beyond loopback even with test secrets or a weak admin token",
        ),
    ] = False,
) -> None:
    """Run the gateway: webhook ingest, health and metrics."""
    import structlog

    from gateway import allocator, collector, log, server
    from gateway import insecure as settings

    cfg = load_config(config)
    count = processes if processes is not None else cfg.server.processes
    metrics_folder = None
    if count > 1:
        from gateway.metrics_sharing import share

        # Before the metrics are imported: the workers' series on the door's /metrics.
        metrics_folder = share()
    from gateway.app import create_app
    from gateway.runtime import ROLES

    log.configure(log_level, redact_fields=cfg.redact_fields)
    listen = host or cfg.host
    refused = settings.refused(cfg, listen, insecure=insecure)
    if refused:
        err.print(
            f"[red]not starting:[/red] {listen} is reachable from other machines and "
            f"{len(refused)} setting(s) are insecure:",
            highlight=False,
        )
        for finding in refused:
            err.print(f"  - {finding}", markup=False, highlight=False, soft_wrap=True)
        err.print(
            "Set real secrets, listen on 127.0.0.1, or pass --insecure to start anyway.",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(1)
    for finding in settings.findings(cfg):
        structlog.get_logger("gateway.insecure").warning(
            "insecure.setting", field=finding.field, problem=finding.problem
        )
    roles = set(role or ["all"])
    unknown = roles - ROLES - {"all"}
    if unknown:
        err.print(f"[red]error:[/red] unknown role(s) {sorted(unknown)}; use all, {sorted(ROLES)}")
        raise typer.Exit(2)
    chosen = ROLES if "all" in roles else frozenset(roles)
    # Before the store's threads exist: each would otherwise get an arena of its own.
    allocator.cap_arenas()
    from gateway import startup

    door, behind = startup.split_roles(chosen, count)
    for problem in startup.problems(cfg, chosen, processes=count):
        err.print(f"[red]not starting:[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if migrate:
        # In a child process, so Alembic never lives in the server; if the child fails,
        # create_app's own upgrade tries again and says why.
        from gateway.store import database

        database.upgrade_apart(cfg.store_url)
    try:
        application = create_app(
            cfg, migrate=migrate, roles=door, reload_on_hangup=True, trim_memory=True
        )
    except ConfigError as exc:
        problems(exc, "in the rules; not starting")
        raise typer.Exit(1) from None
    port = port if port is not None else cfg.port
    for line in startup.summary(cfg, application.state.gateway.rules, chosen, listen, port):
        terminal.line(line)
    # Everything loaded so far lives as long as the process; frozen before the fork, the
    # worker processes share these pages instead of copying them.
    collector.settle()
    gateway = application.state.gateway
    workers = []
    if behind:
        from gateway.worker_process import fork_workers

        workers = fork_workers(cfg, behind, count - 1, startup.worker_lock(cfg, behind))
        for worker in workers:
            worker.attach(gateway)
            terminal.line(
                f"worker process: pid {worker.pid} (roles: {', '.join(sorted(worker.roles))}, "
                f"concurrency {worker.config.worker.concurrency})"
            )
    if metrics_folder is not None:
        from gateway.metrics_sharing import MetricsFolder

        gateway.companions.append(MetricsFolder(metrics_folder))  # removed after the workers
        terminal.line(f"metrics of every process: {metrics_folder}")

    def stop_when_worker_gone(uvicorn_server: Any) -> None:
        def gone() -> None:
            gateway.shutdown.begin()  # the other worker processes drain, all at once
            uvicorn_server.should_exit = True

        for worker in workers:
            worker.on_gone = gone

    server.serve(application, cfg.server, host=listen, port=port, on_server=stop_when_worker_gone)
    if any(worker.failed for worker in workers):
        err.print("[red]stopped:[/red] a worker process died; exiting", highlight=False)
        raise typer.Exit(1)
