"""`reconcile:` blocks: checked by `gateway check` with file and line, one reconciler per
provider that has settings, and `Retry-After` / rate-limit resets read by the one parser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway import config as config_module
from gateway.errors import ConfigError
from gateway.reconcile import RECONCILERS, period_of, rate_limit_wait
from gateway.reconcile_config import SETTINGS

BROKEN = """\
store: sqlite:///gateway.db
sources:
  gh:
    provider: github
    secret: x
    reconcile: {every: 15m, token: t, repo: acme/shop}
  both:
    provider: github
    secret: x
    reconcile: {every: 15m, token: t, repo: acme/shop, org: acme, hook_id: 1}
  pay:
    provider: stripe
    secret: x
    reconcile: {every: soon, api_key: sk, mode: redeliver}
  shop:
    provider: shopify
    secret: x
    reconcile: {every: 15m}
"""


def test_gateway_check_lists_every_problem_of_reconcile_blocks(tmp_path: Path) -> None:
    (tmp_path / "gateway.yaml").write_text(BROKEN)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "--config", str(tmp_path / "gateway.yaml")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "300"},
        check=False,
    )
    assert result.returncode == 1
    assert "5 problem(s)" in result.stderr, result.stderr
    assert "gateway.yaml:6: sources.gh.reconcile:" in result.stderr
    assert "`hook_id` is needed" in result.stderr
    assert "name exactly one of `repo`, `org` or `app: true`" in result.stderr
    assert "sources.pay.reconcile.every: " in result.stderr
    assert "sources.pay.reconcile.mode: " in result.stderr
    assert "provider shopify cannot reconcile (those that can: github, stripe)" in result.stderr


def test_a_valid_reconcile_block_loads(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "sources:\n  gh:\n    provider: github\n    secret: x\n"
        '    reconcile: {every: 15m, token: "${GITHUB_TOKEN}", org: acme, hook_id: 9,\n'
        "                mode: fetch}\n"
    )
    config = config_module.load(path, environ={"GITHUB_TOKEN": "ghp_x"})
    assert config.sources["gh"].reconcile == {
        "every": "15m", "token": "ghp_x", "org": "acme", "hook_id": 9, "mode": "fetch",
    }  # fmt: skip
    with pytest.raises(ConfigError, match="GITHUB_TOKEN"):
        config_module.load(path, environ={})


def test_every_provider_with_reconcile_settings_has_a_reconciler() -> None:
    assert set(SETTINGS) == set(RECONCILERS) == {"github", "stripe"}


@pytest.mark.parametrize(
    ("status", "headers", "wait"),
    [
        (429, {"retry-after": "5"}, 5.0),
        (403, {"retry-after": "0"}, 0.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1010"}, 10.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "990"}, 0.0),
        (429, {}, 0.0),  # a rate limit naming no wait: backed off
        (403, {"x-ratelimit-remaining": "17"}, None),  # a refusal, not a rate limit
        (403, {}, None),
    ],
)
def test_rate_limit_answers_are_read_as_github_and_stripe_send_them(
    status: int, headers: dict[str, str], wait: float | None
) -> None:
    assert rate_limit_wait(status, headers, now=1000.0) == wait


def test_replicas_agree_on_the_period_of_an_instant() -> None:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 12, 1, 0, 15, tzinfo=UTC)
    assert period_of(900, start) == period_of(900, start + timedelta(seconds=899))
    assert period_of(900, start) != period_of(900, start + timedelta(seconds=900))


def test_rules_see_how_an_event_came_in() -> None:
    from datetime import UTC, datetime

    from gateway.rules.scope import scope_for
    from gateway.store import Event

    event = Event(7, "pay", "stripe", "invoice.paid", "evt_1", datetime.now(UTC), {}, b"{}",
                  "pending", received_via="reconcile")  # fmt: skip
    assert scope_for(event)["event"]["received_via"] == "reconcile"


def test_gateway_check_says_which_sources_reconcile_and_how(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "gateway.yaml").write_text(
        "sources:\n  pay:\n    provider: stripe\n    secret: whsec_x\n"
        "    reconcile: {every: 10m, api_key: sk_test_x}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "--config", str(tmp_path / "gateway.yaml")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "reconcile: pay every 600 s, mode fetch, looking back 259200 s at first" in result.stdout
