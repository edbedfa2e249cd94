"""`gateway retention prune|vacuum` and `gateway archive restore`: the retention job by hand,
a full VACUUM window for an older SQLite file, and archived history brought back for replay.

Registered on the `gateway` command by `gateway.cli`; each opens the store from the config.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import orjson
import typer

from gateway import config as config_module
from gateway.errors import ConfigError, GatewayError

if TYPE_CHECKING:  # the store (SQLAlchemy) loads only for the commands that open it
    from gateway.store import Store

T = TypeVar("T")
retention_app = typer.Typer(help="Prune old history now; compact a SQLite store.")
archive_app = typer.Typer(help="Pruned history kept in the archive.", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: $GATEWAY_CONFIG or ./gateway.yaml)"),
]


def _when(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _with_store(path: Path | None, use: Callable[[config_module.Config, Store], Awaitable[T]]) -> T:
    try:
        cfg = config_module.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1) from None

    async def go() -> T:
        from gateway.store import Store

        store = Store(cfg.store_url)
        try:
            await store.open()
            return await use(cfg, store)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except GatewayError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@retention_app.command("prune")
def prune(config: ConfigOption = None) -> None:
    """Run one pass of the pruning job now (archiving first if `retention.archive` is set)."""

    async def go(cfg: config_module.Config, store: Store) -> None:
        from gateway.retention.archive import open_archive
        from gateway.retention.prune import Pruner

        settings = cfg.retention
        archive = open_archive(settings.archive, cfg.base_dir, settings.archive_endpoint)
        pruned = await Pruner(store, settings, archive=archive).prune()
        if pruned is None:
            typer.echo("another process is pruning now; nothing done")
            return
        typer.echo(orjson.dumps(pruned.as_dict()).decode())

    _with_store(config, go)


@retention_app.command("vacuum")
def vacuum(config: ConfigOption = None) -> None:
    """Rewrite a SQLite store whole (VACUUM), switching it to incremental auto-vacuum: once,
    for a file made before 0.2, in a window when the gateway is stopped. PostgreSQL: nothing."""

    async def go(cfg: config_module.Config, store: Store) -> None:
        before = await store.retention.size()
        await store.retention.compact()
        typer.echo(f"{before} bytes before, {await store.retention.size()} after")

    _with_store(config, go)


@archive_app.command("restore")
def restore_command(
    since: Annotated[str, typer.Option(help="From this time (ISO 8601, UTC if no zone)")],
    until: Annotated[str, typer.Option(help="Up to this time, excluded")],
    runs: Annotated[bool, typer.Option(help="Also bring back the runs and their steps")] = True,
    config: ConfigOption = None,
) -> None:
    """Bring archived events (and runs) received in [SINCE, UNTIL) back into the store, for
    `gateway replay EVENT`."""

    async def go(cfg: config_module.Config, store: Store) -> None:
        from gateway.retention.archive import open_archive
        from gateway.retention.restore import restore

        settings = cfg.retention
        archive = open_archive(settings.archive, cfg.base_dir, settings.archive_endpoint)
        if archive is None:
            typer.echo("error: no archive: set retention.archive in the config", err=True)
            raise typer.Exit(1)
        done = await restore(store, archive, _when(since), _when(until), runs=runs)
        typer.echo(orjson.dumps(asdict(done)).decode())

    _with_store(config, go)
