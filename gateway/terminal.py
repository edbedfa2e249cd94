"""How the CLI writes for people and for programs: a terminal's width when there is one; when
the output goes to a file or a pipe, lines as long as they are (no table cut at 80 columns,
no line wrapped inside a URL). Logs of commands other than `serve` go to stderr, warnings up.
"""

from __future__ import annotations

import sys
from typing import Any

import structlog
from rich.console import Console
from typer.core import TyperArgument, TyperOption

# "No limit" for rich, which needs a number: wider than any line a command prints.
PIPED_WIDTH = 100_000


def console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # No emoji codes: `:name:` in an event type, a rule name or a URL is printed as it is, and
    # rich's table of codes (1 MB resident) stays out of `gateway serve`.
    return Console(stderr=stderr, width=None if stream.isatty() else PIPED_WIDTH, emoji=False)


def quiet_logs() -> None:
    """Commands print their result on stdout alone: what they log goes to stderr, and only
    warnings and errors (`serve` configures its own logs). For the `gateway` process only
    (`cli.main`): a test invoking `cli.app` keeps its own logging."""
    if not structlog.is_configured():
        from gateway import log

        log.configure("warning", json=False)


_type_of_option = TyperOption.display_type_rich


def _flag_shows_no_type(self: TyperOption, ctx: Any) -> str | None:
    # Typer shows `<bool>` beside a flag, which takes no value: the help would have readers
    # type `--json true`.
    return None if self.is_flag else _type_of_option(self, ctx)


TyperOption.display_type_rich = _flag_shows_no_type  # type: ignore[method-assign]


_usage_name = TyperArgument._usage_display_name


def _required_argument_as_the_readme_writes_it(self: TyperArgument) -> str:
    # Typer writes a required argument `{run_id}` in the usage line; the README and
    # docs/operations.md write `gateway run RUN`.
    return str(self.display_name_raw) if self.required else _usage_name(self)


TyperArgument._usage_display_name = _required_argument_as_the_readme_writes_it  # type: ignore[method-assign]
