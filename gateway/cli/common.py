"""What every `gateway` command shares: the typer app, the consoles, loading the config and
the one way to open the store.

A command module adds its commands to `app` (or a sub-app of its own); `gateway.cli` lists
the modules.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from gateway import config as config_module
from gateway import terminal
from gateway.config import Config
from gateway.errors import ConfigError, GatewayError

if TYPE_CHECKING:
    from gateway.rules.loader import RuleSet
    from gateway.store import Store

app = typer.Typer(help="Webhook-to-assistant automation gateway.", no_args_is_help=True)
console = terminal.console_on_first_use()
err = terminal.console_on_first_use(stderr=True)
T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: $GATEWAY_CONFIG or ./gateway.yaml)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]


def load_config(path: Path | None) -> Config:
    try:
        return config_module.load(path)
    except ConfigError as exc:
        problems(exc, "in the configuration")
        raise typer.Exit(1) from None


def load_rules(cfg: Config) -> RuleSet:
    """The rules as the server would run them (`load_ruleset`), or every problem and exit 1."""
    from gateway.ruleset import load_ruleset

    try:
        return load_ruleset(cfg)
    except ConfigError as exc:
        problems(exc, "in the rules")
        raise typer.Exit(1) from None


def problems(exc: ConfigError, where: str) -> None:
    err.print(f"[red]{len(exc.problems)} problem(s) {where}:[/red]")
    for problem in exc.problems:
        err.print(f"  - {problem}", markup=False, highlight=False, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print `message` as an error; the exit (status 1) for the caller to raise."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; a `GatewayError` is a one-line error and exit status 1."""
    try:
        return asyncio.run(make())  # type: ignore[arg-type]
    except GatewayError as exc:
        raise fail(str(exc)) from None


def with_store(cfg: Config, use: Callable[[Store], Awaitable[T]], *, migrate: bool = False) -> T:
    """Open the store of `cfg`, `use` it, close it: the only way a command opens the store.

    Without `migrate`, a database whose schema is not this gateway's is left as it is: the
    command fails, saying to run `gateway db upgrade`. With it (the commands that also work
    on a new database), the schema is brought up to date first.
    """

    async def go() -> T:
        from gateway.store import Store

        store = Store(cfg.store_url)
        try:
            await store.open(migrate=migrate)
            return await use(store)
        finally:
            await store.close()

    return run(go)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
