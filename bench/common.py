"""What every bench script shares: its paths, running under the repo's virtualenv, and its
command line (a description from its docstring, `--quick` and `--json`).

A script imports this first (`import common`: Python finds it beside the script), calls
`common.ensure_venv(__file__)` before it imports the gateway, and reads its options through
`common.Arguments`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def ensure_venv(script: str) -> None:
    """Re-run `script` under the repo's virtualenv python (the servers and versions the tests
    use), and make the repo's packages importable from it."""
    if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), script, *sys.argv[1:]])
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


class Arguments(argparse.ArgumentParser):
    """A bench's options, described by the first paragraph of its docstring, with `--json FILE`
    (its figures, also written there) and `--quick`: a smoke check, in which the values of
    `quick` replace the defaults of the options not given."""

    def __init__(self, doc: str | None, *, quick: Mapping[str, Any]) -> None:
        super().__init__(description=(doc or "").split("\n\n")[0])
        self.quick = dict(quick)
        shown = ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in quick.items())
        self.add_argument(
            "--quick", action="store_true", help=f"a smoke check ({shown or 'as it is'})"
        )
        self.add_argument("--json", type=Path, help="also write the figures to this file")

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        args = self.parse_args(argv)
        if args.quick and self.quick:
            self.set_defaults(**self.quick)
            args = self.parse_args(argv)
        return args


def write_json(path: Path | None, figures: Any) -> None:
    """Write `figures` to `path` as indented JSON (nothing without a path: no `--json`)."""
    if path is not None:
        path.write_text(json.dumps(figures, indent=2) + "\n")
