"""Setuptools hooks: a wheel or sdist records the git commit it was built from.

They write `gateway/_build.py` into what is built (never into the source tree), so
`gateway --version` names the commit wherever the package is installed; see gateway/build.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
STAMP = Path("gateway", "_build.py")


def built_commit() -> str | None:
    """$GATEWAY_COMMIT (the image's build argument, where no .git is copied), else git's HEAD."""
    if os.environ.get("GATEWAY_COMMIT"):
        return os.environ["GATEWAY_COMMIT"]
    try:
        top = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if Path(top).resolve() != ROOT:
            return None  # an unpacked sdist inside some other repository
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if changed else head


def write_stamp(base: Path) -> None:
    commit = built_commit()
    if commit is not None:  # else keep the stamp an sdist brought along
        (base / STAMP).write_text(
            f'"""Written when this package was built (build_hooks.py)."""\n\nCOMMIT = "{commit}"\n'
        )


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # an editable install asks git at run time
            write_stamp(Path(self.build_lib))


class Sdist(sdist):
    def make_release_tree(self, base_dir: str, files: Any) -> None:
        super().make_release_tree(base_dir, files)
        write_stamp(Path(base_dir))
