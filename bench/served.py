"""A real `gateway serve --processes N` for a bench: started on a config in a work folder,
ready, and measured from outside (CPU time and RSS of the door and its worker processes).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcesses:
    """`gateway serve --processes N` on `<workdir>/gateway.db` with `rules`, `document` over
    the store and rules keys; stopped (SIGTERM, waited for) on leaving the block."""

    def __init__(
        self, workdir: Path, document: dict[str, Any], rules: list[Any], processes: int
    ) -> None:
        self.workdir = workdir
        self.store_url = f"sqlite:///{workdir / 'gateway.db'}"
        (workdir / "rules").mkdir(exist_ok=True)
        (workdir / "rules" / "bench.yaml").write_text(yaml.safe_dump(rules))
        config = {"store": self.store_url, "rules": str(workdir / "rules"), **document}
        (workdir / "gateway.yaml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.processes = processes
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []

    def __enter__(self) -> GatewayProcesses:
        command = [sys.executable, "-m", "gateway.cli", "serve", "--config", "gateway.yaml"]
        command += ["--port", str(self.port), "--processes", str(self.processes)]
        with (self.workdir / "gateway.log").open("wb") as out:
            self.proc = subprocess.Popen(
                [*command, "--log-level", "warning"],
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready(60)
        pid = self.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        self.pids = [pid, *map(int, children)]
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=60)

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.workdir / "gateway.log").read_text(errors="replace")
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1):
                    return
            except OSError:  # not listening yet, or 503 while the workers start
                time.sleep(0.05)
        raise TimeoutError(f"gateway not ready after {timeout} s")

    def cpu_seconds(self) -> list[float]:
        """User and system CPU time of each of the gateway's processes so far (the door
        first), threads included."""
        return [cpu_seconds(pid) for pid in self.pids]

    def run_span(self) -> float:
        """Seconds from the first run's start to the last run's end (the store's clock)."""
        with sqlite3.connect(self.workdir / "gateway.db") as db:
            query = "SELECT min(started_at), max(finished_at) FROM runs"
            first, last = db.execute(query).fetchone()
        return (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()

    def rss_mb(self) -> list[float]:
        """Resident memory of each of the gateway's processes now, the door first."""
        return [round(rss_mb(pid), 1) for pid in self.pids]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
