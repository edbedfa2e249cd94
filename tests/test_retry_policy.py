"""The retry policy: backoff up to a cap, a horizon rather than a small attempt count,
Retry-After as a floor, and overrides per tool family, tool and rule."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import Config
from gateway.retrying import RetryOverride, RetryPolicy
from gateway.runs.policy import decide, policy_for

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def no_jitter() -> float:
    return 1.0  # the top of the jitter range: the delay is the full backoff


def test_defaults_outlast_an_hour_long_outage() -> None:
    policy = RetryPolicy()
    now, attempt = T0, 1
    while now < T0 + timedelta(hours=1):
        decision = decide(policy, attempt=attempt, since=T0, now=now, jitter=no_jitter)
        assert decision.at is not None, f"gave up at attempt {attempt}, {now - T0} in"
        now, attempt = decision.at, attempt + 1
    # Doubling to the 10 min cap: 1+2+...+512 s, then every 10 min.
    assert 10 <= attempt <= 20


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff_base=1, backoff_max=600)
    delays = [
        decide(policy, attempt=n, since=T0, now=T0, jitter=no_jitter).delay for n in range(1, 13)
    ]
    assert delays[:4] == [1, 2, 4, 8]
    assert delays[-1] == 600
    assert max(delays) == 600


def test_jitter_spreads_delays_between_half_and_the_full_backoff() -> None:
    policy = RetryPolicy(backoff_base=8)
    low = decide(policy, attempt=1, since=T0, now=T0, jitter=lambda: 0.0).delay
    assert low == 4


def test_the_run_is_given_up_at_the_horizon_after_a_last_try_there() -> None:
    policy = RetryPolicy(backoff_base=600, backoff_max=600, horizon=900)
    near_end = T0 + timedelta(seconds=800)
    last = decide(policy, attempt=3, since=T0, now=near_end, jitter=no_jitter)
    assert last.at == T0 + timedelta(seconds=900)  # capped to the horizon, not skipped
    ended = decide(policy, attempt=4, since=T0, now=last.at, jitter=no_jitter)
    assert ended.give_up
    assert "retry horizon" in ended.reason


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(backoff_base=1)
    decision = decide(policy, attempt=1, since=T0, now=T0, retry_after=120, jitter=no_jitter)
    assert decision.delay == 120


def test_max_attempts_when_set_still_ends_the_run() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert not decide(policy, attempt=2, since=T0, now=T0).give_up
    ended = decide(policy, attempt=3, since=T0, now=T0)
    assert ended.give_up and ended.reason == "gave up after 3 attempts"


def test_overrides_go_family_then_tool_then_rule() -> None:
    tools = {
        "http": RetryOverride(horizon=3600, backoff_max=60),
        "http.request": RetryOverride(backoff_max=30),
    }
    rule = RetryOverride(horizon=7200)
    policy = policy_for(RetryPolicy(), tools, rule, "http.request")
    assert (policy.horizon, policy.backoff_max, policy.backoff_base) == (7200, 30, 1.0)
    assert policy_for(RetryPolicy(), tools, None, "email.send") == RetryPolicy()


def test_config_reads_durations_and_the_older_worker_settings_win() -> None:
    config = Config.model_validate(
        {"retry": {"backoff_max": "10m", "horizon": "1d"}, "worker": {"max_attempts": 4}}
    )
    policy = config.retry_policy
    assert (policy.backoff_max, policy.horizon, policy.max_attempts) == (600, 86400, 4)
    assert Config().retry_policy.max_attempts is None


@pytest.mark.parametrize("bad", ["ten minutes", "10x", "-5m", 0])
def test_a_bad_duration_is_a_config_error(bad: object) -> None:
    with pytest.raises(ValidationError, match="horizon"):
        Config.model_validate({"retry": {"horizon": bad}})


def test_a_rule_takes_its_own_retry_settings_and_refuses_unknown_ones() -> None:
    from gateway.rules.model import Rule

    base = {"name": "r", "on": {"source": "shop"}, "actions": [{"log.record": {}}]}
    rule = Rule.model_validate({**base, "retry": {"horizon": "3d", "backoff_max": "2m"}})
    assert rule.retry == RetryOverride(horizon=3 * 86400, backoff_max=120)
    with pytest.raises(ValidationError, match=r"retry\.horizn"):
        Rule.model_validate({**base, "retry": {"horizn": "3d"}})


def test_gateway_check_names_a_bad_retry_setting(write_config: Callable[..., Path]) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    path = write_config(retry={"horizon": "forever", "tools": {"http": {"backof_max": "1m"}}})
    result = CliRunner().invoke(app, ["check", "--config", str(path)])

    assert result.exit_code == 1
    assert "retry.horizon" in result.output and "not a duration" in result.output
    assert "retry.tools.http.backof_max" in result.output
