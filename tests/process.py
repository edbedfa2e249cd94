"""`gateway serve` as a real subprocess, for crash and restart tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    def __init__(self, config: Path, port: int | None = None, *extra: str) -> None:
        self.config = config
        self.port = port or free_port()
        self.extra = extra
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = config.parent / f"gateway-{self.port}.log"

    def start(self, timeout: float = 30) -> GatewayProcess:
        command = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(self.config),
            "--port",
            str(self.port),
            *self.extra,
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx2.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx2.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"gateway not ready after {timeout}s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush; what was committed is all there is."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_until(condition: Callable[[], bool], timeout: float = 20, every: float = 0.05) -> None:
    """Poll `condition` until it holds; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(every)
