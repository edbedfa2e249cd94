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
from tests.fixtures import TEST_SOURCES
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


# ---------------------------------------------------------------------- item 15: check


def test_gateway_check_warns_about_each_published_test_secret_naming_the_source_only(
    configure: Callable[..., Path],
) -> None:
    code, output = check(configure(sources=TEST_SOURCES))

    assert code == 0, output
    assert sorted(warnings(output)) == sorted(f"sources.{name}.secret" for name in TEST_SOURCES)
    for source in TEST_SOURCES.values():
        assert str(source["secret"]) not in output


def test_gateway_check_warns_about_a_test_secret_among_rotated_secrets(
    configure: Callable[..., Path],
) -> None:
    stripe = {
        "provider": "stripe",
        "secrets": ["whsec_b7f0c1d2e3a4f5061728", "whsec_test_gateway_secret"],
    }

    _, output = check(configure(sources={"stripe": stripe}))

    assert warnings(output) == ["sources.stripe.secrets.1"]


def test_gateway_check_warns_about_the_change_me_admin_token(
    configure: Callable[..., Path],
) -> None:
    code, output = check(configure(admin_token="change-me"))

    assert code == 0, output
    assert warnings(output) == ["admin_token"]
    assert "change-me" not in output


def test_gateway_check_warns_about_a_long_placeholder_admin_token(
    configure: Callable[..., Path],
) -> None:
    _, output = check(configure(admin_token="change-me-to-a-long-random-value-please"))

    assert warnings(output) == ["admin_token"]


def test_gateway_check_warns_about_an_admin_token_one_character_too_short(
    configure: Callable[..., Path],
) -> None:
    _, output = check(configure(admin_token=STRONG_TOKEN[: MIN_ADMIN_TOKEN_LENGTH - 1]))

    assert warnings(output) == ["admin_token"]
    assert f"{MIN_ADMIN_TOKEN_LENGTH} characters" in output


def test_gateway_check_accepts_an_admin_token_of_the_minimum_length(
    configure: Callable[..., Path],
) -> None:
    assert len(STRONG_TOKEN) == MIN_ADMIN_TOKEN_LENGTH

    code, output = check(configure(admin_token=STRONG_TOKEN, sources=REAL_SOURCES))

    assert code == 0, output
    assert warnings(output) == []


# ---------------------------------------------------------------------- item 15: serve


def test_serve_refuses_a_non_loopback_address_with_test_secrets_and_names_the_flag(
    configure: Callable[..., Path],
) -> None:
    refused = serve(configure(sources=TEST_SOURCES), "--host", "0.0.0.0")  # noqa: S104

    assert refused.returncode == 1
    output = " ".join(refused.stderr.split())
    assert "sources.shop.secret" in output
    assert "--insecure" in output
    assert "shpss_test_gateway_secret" not in output


def test_serve_refuses_a_non_loopback_address_with_a_short_admin_token(
    configure: Callable[..., Path],
) -> None:
    config = configure(admin_token=STRONG_TOKEN[:-1], sources=REAL_SOURCES)

    refused = serve(config, "--host", "0.0.0.0")  # noqa: S104

    assert refused.returncode == 1
    assert "admin_token" in refused.stderr


def test_serve_refuses_a_non_loopback_host_from_the_config(
    configure: Callable[..., Path],
) -> None:
    refused = serve(configure(host="0.0.0.0", admin_token="change-me"))  # noqa: S104

    assert refused.returncode == 1
    assert "admin_token" in refused.stderr


@pytest.mark.slow
def test_serve_starts_on_loopback_with_test_secrets(configure: Callable[..., Path]) -> None:
    assert starts(configure(sources=TEST_SOURCES, admin_token="change-me"))


@pytest.mark.slow
def test_serve_starts_on_a_non_loopback_address_with_the_insecure_flag(
    configure: Callable[..., Path],
) -> None:
    config = configure(sources=TEST_SOURCES, admin_token="change-me")

    assert starts(config, "--host", "0.0.0.0", "--insecure")  # noqa: S104


@pytest.mark.slow
def test_serve_starts_on_a_non_loopback_address_with_real_values(
    configure: Callable[..., Path],
) -> None:
    config = configure(sources=REAL_SOURCES, admin_token=STRONG_TOKEN)

    assert starts(config, "--host", "0.0.0.0")  # noqa: S104


def test_check_warns_about_exactly_what_serve_refuses(configure: Callable[..., Path]) -> None:
    config = configure(sources=TEST_SOURCES, admin_token="change-me")
    _, checked = check(config)

    refused = serve(config, "--host", "0.0.0.0")  # noqa: S104

    named = re.findall(r"^\s+- (\S+?):", refused.stderr, re.M)
    assert sorted(named) == sorted(warnings(checked))


# ---------------------------------------------------------------------- item 15: compose


def compose_text() -> str:
    lines = COMPOSE.read_text().splitlines()
    return "\n".join(line.split(" #")[0] for line in lines if not line.lstrip().startswith("#"))


def test_compose_publishes_every_port_on_loopback_only() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    published = [p for s in services.values() for p in s.get("ports", [])]

    assert published
    assert all(str(p).startswith("127.0.0.1:") for p in published), published


def test_compose_falls_back_to_no_secret() -> None:
    text = compose_text()
    fallbacks = re.findall(r"\$\{(\w+):?-([^}]*)\}", text)
    secret_like = [
        (name, value)
        for name, value in fallbacks
        if value and re.search(r"SECRET|TOKEN|PASSWORD|WHSEC|KEY", name)
    ]

    assert secret_like == []
    assert "change-me" not in text
    for source in TEST_SOURCES.values():
        assert str(source["secret"]) not in text


def test_compose_requires_the_admin_token_the_store_password_and_the_webhook_secrets() -> None:
    required = set(re.findall(r"\$\{(\w+):\?[^}]+\}", compose_text()))

    assert {
        "GATEWAY_ADMIN_TOKEN",
        "POSTGRES_PASSWORD",
        "SHOPIFY_WEBHOOK_SECRET",
        "STRIPE_WHSEC",
        "GITHUB_WEBHOOK_SECRET",
    } <= required
