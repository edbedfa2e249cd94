"""What operators see of runs that wait: the state with its next try, and the downstreams
whose circuits hold runs (read from the runs: the CLI has no worker to ask)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from gateway.runs.circuit import REASON
from gateway.store.status import RunStatus

_CIRCUIT = REASON.format("")


def run_state(run: Mapping[str, Any]) -> str:
    """`waiting until 12:04:10Z`, `pending until ...` for a retry; else the status."""
    status, at = run["status"], run.get("next_attempt_at")
    if status in (RunStatus.PENDING, RunStatus.WAITING) and at:
        return f"{status} until {_clock(at)}"
    return str(status)


def open_circuits(runs: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, str | None]]:
    """Downstreams whose open circuit holds waiting runs: how many, and the next try."""
    found: dict[str, tuple[int, str | None]] = {}
    for run in runs:
        error = run.get("error") or ""
        if run["status"] != RunStatus.WAITING or not error.startswith(_CIRCUIT):
            continue
        name = error[len(_CIRCUIT) :]
        count, at = found.get(name, (0, None))
        nxt = run.get("next_attempt_at")
        found[name] = (count + 1, min(filter(None, (at, nxt)), default=None))
    return found


def circuit_lines(runs: Iterable[Mapping[str, Any]]) -> list[str]:
    return [
        f"circuit open: {name}: {count} run(s) waiting, next try {_clock(at) if at else '-'}"
        for name, (count, at) in sorted(open_circuits(runs).items())
    ]


def _clock(at: str | datetime) -> str:
    text = at.isoformat() if isinstance(at, datetime) else at
    return text.replace("+00:00", "Z")
