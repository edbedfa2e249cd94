"""What this build of the gateway is: its version and the commit it was built from.

A wheel, an sdist and the image carry the commit in `gateway/_build.py`, written when they
are built (build_hooks.py); a git checkout (an editable install) asks git, once.
"""

from __future__ import annotations

import importlib
import subprocess
from functools import cache
from pathlib import Path

from gateway import __version__

SOURCE = Path(__file__).resolve().parents[1]


@cache
def commit() -> str | None:
    """The commit's short hash (`+dirty` with uncommitted changes), or None if unknown."""
    try:
        stamped: str = importlib.import_module("gateway._build").COMMIT
        return stamped
    except ImportError:
        pass
    if not (SOURCE / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(SOURCE), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(SOURCE), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if changed else head


def describe() -> str:
    """What `gateway version` and `gateway --version` print, e.g. `0.2.0 (commit 1a2b3c4d5e6f)`."""
    return f"{__version__} (commit {commit() or 'unknown'})"
