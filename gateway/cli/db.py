"""`gateway db`: the schema migrations of the store's database."""

from __future__ import annotations

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
    import stamina

    from gateway.store import database

    cfg = load_config(config)
    deadline = time.monotonic() + wait

    async def once() -> str | None:
        engine, _ = database.connect(cfg.store_url)
        try:
            await database.upgrade(engine)
            return await database.current_revision(engine)
        except Exception as exc:
            left = deadline - time.monotonic()
            if _unreachable(exc) and left > 0:
                message = f"waiting for the database ({left:.0f} s left): {exc}"
                err.print(message, highlight=False, soft_wrap=True)
            raise
        finally:
            await engine.dispose()

    async def upgrade() -> str | None:
        try:
            # Backoff from 0.5 s doubling to 5 s, for `wait` seconds in all (none: one try).
            async for attempt in stamina.retry_context(
                on=_unreachable,
                attempts=None if wait else 1,
                timeout=wait or None,
                wait_initial=0.5,
                wait_max=5.0,
                wait_jitter=0.0,
            ):
                with attempt:
                    return await once()
        except Exception as exc:
            if not _unreachable(exc):
                raise
            waited = f" within {wait:g} s" if wait else ""
            message = f"[red]error:[/red] the database did not answer{waited}: {exc}"
            err.print(message, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        raise AssertionError("stamina tries at least once")

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
