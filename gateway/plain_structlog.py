"""structlog for the `gateway` program, without rich's traceback machinery: the gateway writes
JSON logs, and its console logs (other commands' warnings) print tracebacks plainly.

structlog's `dev` and `tracebacks` modules import rich, `rich.traceback` and `rich.pretty` when
rich is installed (the CLI needs rich for its tables), and with them pygments and attrs: 6 MB
resident in every `gateway serve` (docs/benchmarks.md, memory). Importing this module first
imports structlog with rich hidden, so it settles for its plain traceback formatter; rich
stays importable by anyone else afterwards (the CLI's consoles, typer's error pages).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

HIDDEN = frozenset({"rich", "rich.traceback", "rich.pretty"})


class _Hide:
    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name in HIDDEN:
            raise ImportError(f"{name} is hidden while structlog is imported", name=name)
        return None


def load() -> None:
    if "structlog" in sys.modules:
        return
    hide = _Hide()
    sys.meta_path.insert(0, hide)
    try:
        import structlog  # noqa: F401
    finally:
        sys.meta_path.remove(hide)


load()
