"""How the CLI writes for people and for programs: a terminal's width when there is one; when
the output goes to a file or a pipe, lines as long as they are (no table cut at 80 columns,
no line wrapped inside a URL). Logs of commands other than `serve` go to stderr, warnings up.

rich is imported by the first thing a console prints: `gateway serve` prints its summary as
plain lines (`line`) and keeps rich out of the server (2.5 MB resident).
"""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any, cast

import structlog
from typer.core import TyperArgument, TyperOption

if TYPE_CHECKING:
    from rich.console import Console

# "No limit" for rich, which needs a number: wider than any line a command prints.
PIPED_WIDTH = 100_000


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # No emoji codes: `:name:` in an event type, a rule name or a URL is printed as it is, and
    # rich's table of codes (1 MB resident) stays out of `gateway serve`.
    return Console(stderr=stderr, width=None if stream.isatty() else PIPED_WIDTH, emoji=False)


class _FirstUse:
    """A console made (and rich imported) when it is first used."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr

    @functools.cached_property
    def _console(self) -> Console:
        return console(stderr=self._stderr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._console, name)


def console_on_first_use(*, stderr: bool = False) -> Console:
    """`console(stderr=...)`, made when first used: what a command module holds."""
    return cast("Console", _FirstUse(stderr=stderr))


def line(text: str) -> None:
    """`text` on stderr as it is (no markup, no wrapping), without rich."""
    print(text, file=sys.stderr, flush=True)


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
