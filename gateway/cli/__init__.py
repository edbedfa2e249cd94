"""The `gateway` command line: serve, check, send, look into the store and act on it.

Commands that read the store open it directly from the config; no server needs to run.
Each module in `COMMANDS` adds its commands to `app`; a module with a sub-app of its own
(such as `gateway db`) is added in `SUBCOMMANDS`. To add commands, write a module and list it
here. The app is completed when it is asked for (`gateway.cli.app`, `main`).
"""

from __future__ import annotations

# isort: off
# First: structlog, imported by every module below, without rich's tracebacks (3.7 MB).
from gateway import plain_structlog  # noqa: F401
# isort: on

import sys
from types import ModuleType

import typer

# The command modules, each registering its commands on `app` when imported.
COMMANDS = (
    "serve",
    "check",
    "records",
    "operate",
    "schedules",
    "send",
    "evaluate",
    "evals",
    "reconcile",
)
# Sub-apps: `gateway <name> ...`, as "module:attribute".
SUBCOMMANDS = {
    "db": "gateway.cli.db:db_app",
    "knowledge": "gateway.cli.knowledge:knowledge_app",
    "retention": "gateway.retention.cli:retention_app",
    "archive": "gateway.retention.cli:archive_app",
}
# Run on their own: `gateway serve` imports its module alone, not every other command's (their
# modules, tables and models stay out of the server's memory, ~1 MB).
ALONE = frozenset({"serve"})

__all__ = ["app", "main"]


def commands(alone: str | None = None) -> typer.Typer:
    """The `gateway` app with every command registered, or with `alone`'s module only."""
    from gateway.cli.common import app

    for module in (alone,) if alone else COMMANDS:
        _import(f"gateway.cli.{module}")
    if alone is None and not app.registered_groups:
        for name, where in SUBCOMMANDS.items():
            module, attribute = where.split(":")
            app.add_typer(getattr(_import(module), attribute), name=name)
    return app


def _import(name: str) -> ModuleType:
    # The import statement's own path (`__import__`), which `python -X importtime` lists
    # (importlib.import_module is not), so a test can see what `gateway serve` imported.
    __import__(name)
    return sys.modules[name]


def __getattr__(name: str) -> typer.Typer:
    if name == "app":  # `from gateway.cli import app` (tests, docs): the whole command line
        return commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    from gateway import terminal

    terminal.quiet_logs()
    # Alone only as the first word: `gateway --help serve` still lists every command.
    command = sys.argv[1] if len(sys.argv) > 1 else None
    commands(command if command in ALONE else None)()
