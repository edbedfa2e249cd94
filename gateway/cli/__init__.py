"""The `gateway` command line: serve, check, send, look into the store and act on it.

Commands that read the store open it directly from the config; no server needs to run.
Each module below adds its commands to `app`; a module with a sub-app of its own (such as
`gateway db`) is added in `SUBCOMMANDS`. To add commands, write a module and list it here.
"""

from __future__ import annotations

# isort: off
# First: structlog, imported by every module below, without rich's tracebacks (3.7 MB).
from gateway import plain_structlog  # noqa: F401
# isort: on

from gateway.cli import (
    check,
    evals,
    evaluate,
    operate,
    reconcile,
    records,
    schedules,
    send,
    serve,
)
from gateway.cli.common import app
from gateway.cli.db import db_app
from gateway.cli.knowledge import knowledge_app
from gateway.retention.cli import archive_app, retention_app

# The command modules, each registering its commands on `app` when imported.
COMMANDS = (serve, check, records, operate, schedules, send, evaluate, evals, reconcile)
# Sub-apps: `gateway <name> ...`.
SUBCOMMANDS = {
    "db": db_app,
    "knowledge": knowledge_app,
    "retention": retention_app,
    "archive": archive_app,
}
for name, sub_app in SUBCOMMANDS.items():
    app.add_typer(sub_app, name=name)

__all__ = ["app", "main"]


def main() -> None:
    from gateway import terminal

    terminal.quiet_logs()
    app()
