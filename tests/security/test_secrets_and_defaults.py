"""Insecure defaults are loud: a store password is never shown, published test secrets and weak
admin tokens are named by `gateway check` and refused by `gateway serve` beyond loopback, and
the compose file publishes nothing beyond loopback and falls back to no secret.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from typer.testing import CliRunner

from gateway import cli
from tests.process import GatewayProcess, free_port

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose.yaml"
# docs/operations.md: an admin token shorter than this many characters is weak.
MIN_ADMIN_TOKEN_LENGTH = 32
STRONG_TOKEN = "0123456789abcdef0123456789abcdef"
REAL_SOURCES = {"shop": {"provider": "shopify", "secret": "b7f0c1d2e3a4f5061728394a5b6c7d8e"}}
PASSWORD = "s3cret-pw"
SERVE = [sys.executable, "-m", "gateway.cli", "serve"]


@pytest.fixture
def configure(tmp_path: Path) -> Callable[..., Path]:
    """Write a gateway.yaml (no rules); keyword arguments set its keys."""

    def write(**keys: Any) -> Path:
        (tmp_path / "rules").mkdir(exist_ok=True)
        document = {"store": f"sqlite:///{tmp_path / 'gateway.db'}", "rules": "rules", **keys}
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(document))
        return path

    return write


def check(config: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli.app, ["check", "--config", str(config)])
    return result.exit_code, " ".join(result.output.split())


def warnings(output: str) -> list[str]:
    return re.findall(r"warning: (\S+?):", output)


def serve(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`gateway serve` as a process that is expected to refuse to start."""
    return subprocess.run(
        [*SERVE, "--config", str(config), "--port", str(free_port()), *options],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def starts(config: Path, *options: str) -> bool:
    process = GatewayProcess(config, None, *options).start()
    try:
        return httpx2.get(process.url + "/healthz", timeout=5).status_code == 200
    finally:
        process.stop()


# ---------------------------------------------------------------------- item 13: store URLs


@pytest.mark.parametrize(
    "store",
    [
        f"postgresql://gateway:{PASSWORD}@db.internal:5432/gateway",
        f"postgresql+asyncpg://gateway:{PASSWORD}@db.internal/gateway",
        f"postgresql://gateway@db.internal/gateway?password={PASSWORD}",
        f"postgresql://gateway:{PASSWORD}@db.internal:notaport/gateway",
    ],
    ids=["plain", "driver", "query", "unparseable"],
)
def test_gateway_check_never_prints_the_store_password(
    configure: Callable[..., Path], store: str
) -> None:
    code, output = check(configure(store=store))

    assert code == 0, output
    assert "db.internal" in output
    assert PASSWORD not in output


def test_gateway_send_never_prints_the_password_of_the_url_it_could_not_reach(
    configure: Callable[..., Path], tmp_path: Path
) -> None:
    payload = tmp_path / "order.json"
    payload.write_text("{}")
    config = configure(sources=REAL_SOURCES)
    target = f"http://gateway:{PASSWORD}@127.0.0.1:{free_port()}/hooks/shop"

    result = CliRunner().invoke(
        cli.app,
        ["send", str(payload), "--source", "shop", "--config", str(config), "--url", target],
    )

    assert result.exit_code == 1
    assert "could not post to" in result.output
    assert PASSWORD not in result.output
