"""`gateway db`: the schema migrations of the store's database."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer

from gateway.cli.common import ConfigOption, console, err, load_config, run

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


def _unreachable(exc: BaseException) -> bool:
    """The database is not there yet (refused, unknown host, starting up): worth waiting for."""
    if isinstance(exc, OSError):
        return True
    # PostgreSQL's "the database system is starting up" (SQLSTATE 57P03), wrapped by SQLAlchemy.
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == "57P03"


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOption = None,
    wait: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds to retry while the database cannot be reached (default: none)"
        ),
    ] = 0,
) -> None:
    """Apply every pending migration."""
    from gateway.store import database

    cfg = load_config(config)
    deadline = time.monotonic() + wait

    async def upgrade() -> str | None:
        delay = 0.5
        while True:
            engine, _ = database.connect(cfg.store_url)
            try:
                await database.upgrade(engine)
                return await database.current_revision(engine)
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                left = deadline - time.monotonic()
                if left < delay:
                    waited = f" within {wait:g} s" if wait else ""
                    message = f"[red]error:[/red] the database did not answer{waited}: {exc}"
                    err.print(message, highlight=False, soft_wrap=True)
                    raise typer.Exit(1) from None
                message = f"waiting for the database ({left:.0f} s left): {exc}"
                err.print(message, highlight=False, soft_wrap=True)
            finally:
                await engine.dispose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    console.print(f"schema at revision {run(upgrade)}")


@db_app.command("current")
def db_current(config: ConfigOption = None) -> None:
    """Print the schema revision of the database and of this gateway."""
    from gateway.store import database

    cfg = load_config(config)

    async def current() -> str | None:
        engine, _ = database.connect(cfg.store_url)
        try:
            return await database.current_revision(engine)
        finally:
            await engine.dispose()

    console.print(f"database: {run(current)}  gateway: {database.head_revision()}")
