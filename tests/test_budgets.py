"""Daily budgets: once a rule (or all rules) spent its `cost_per_day` or `tokens_per_day`,
its next assistant runs make no model request. The scripted model's journal of requests is
the proof; a clock injected into the budgets moves the day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx2
import pytest

from gateway.store import Store
from gateway.testing.fake_llm import ScriptedModel, answer
from tests.fixtures import requires_fixtures
from tests.live import LiveGateway, live_gateway
from tests.postgres import fresh_database_sync

pytestmark = [requires_fixtures]

# 1,000 + 1,000 tokens at 1,000 USD per million each: 2.00 USD a turn.
PRICES = {"input": 1000.0, "output": 1000.0}
USAGE = (1000, 1000)


def rule(budget: str = "") -> str:
    return f"""
- name: triage
  on: {{source: shop, event: orders/create}}
  {budget}
  assistant:
    prompt: "Order {{{{ payload.name }}}}"
"""


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as scripted:
        yield scripted


def gateway(tmp_path: Path, model: ScriptedModel, rules: str, **overrides: Any) -> Any:
    profile = {"api": "responses", "base_url": model.url, "model": "m", "prices": PRICES}
    return live_gateway(tmp_path, rules, models={"default": profile}, **overrides)


def run_once(gw: LiveGateway, event_id: str, count: int) -> Any:
    gw.post_order(event_id, name=f"#{event_id}")
    return gw.finished_runs(count)[-1]


def test_a_run_that_crosses_cost_per_day_ends_the_next_runs_failed_without_a_model_request(
    tmp_path: Path, model: ScriptedModel
) -> None:
    model.script(answer("First.", usage=USAGE))
    with gateway(tmp_path, model, rule("budget: {cost_per_day: 1.50}")) as gw:
        first = run_once(gw, "e1", 1)
        second = run_once(gw, "e2", 2)
        metrics = gw.client.get("/metrics").text

    assert first.status == "succeeded"
    assert second.status == "failed"
    assert second.error.startswith("budget reached: rule triage budget, cost 2.0000 of 1.5 USD")
    assert len(model.requests) == 1  # the second run asked the model nothing
    assert 'gateway_budget_reached_total{rule="triage",scope="rule"} 1.0' in metrics


def test_a_run_under_its_budget_calls_the_model(tmp_path: Path, model: ScriptedModel) -> None:
    model.script(answer("First.", usage=USAGE), answer("Second.", usage=USAGE))
    # 2.00 spent, 2.01 allowed: under, so the second run runs (and crosses it).
    with gateway(tmp_path, model, rule("budget: {cost_per_day: 2.01}")) as gw:
        run_once(gw, "e1", 1)
        second = run_once(gw, "e2", 2)

    assert second.status == "succeeded"
    assert len(model.requests) == 2


def test_the_global_tokens_per_day_stops_every_rule(tmp_path: Path, model: ScriptedModel) -> None:
    model.script(answer("First.", usage=USAGE))
    budget = {"tokens_per_day": 2000, "timezone": "Europe/Paris"}
    with gateway(tmp_path, model, rule(), budget=budget) as gw:
        run_once(gw, "e1", 1)
        second = run_once(gw, "e2", 2)

    assert second.status == "failed"
    assert "global budget, 2000 of 2000 tokens" in second.error
    assert len(model.requests) == 1


def test_a_deferred_run_waits_for_the_next_day_and_then_runs(
    tmp_path: Path, model: ScriptedModel
) -> None:
    model.script(answer("First.", usage=USAGE), answer("Next day.", usage=USAGE))
    budget = "budget: {cost_per_day: 1.00, on_budget: defer}"
    today = datetime.now(UTC)
    clock = [today]
    with gateway(tmp_path, model, rule(budget)) as gw:
        gw.app.state.gateway.worker.executors["assistant"].budgets.clock = lambda: clock[0]
        run_once(gw, "e1", 1)
        gw.post_order("e2", name="#e2")
        deferred = gw.wait_for(lambda: [r for r in gw.runs() if r.error and "deferred" in r.error])
        [waiting] = deferred
        tomorrow = datetime.combine(today.date() + timedelta(days=1), datetime.min.time(), UTC)
        due = gw.query(lambda s: s.runs.get(waiting.id)).next_attempt_at
        assert (waiting.status, due) == ("pending", tomorrow)
        assert len(model.requests) == 1

        clock[0] = tomorrow + timedelta(seconds=1)  # the next day: nothing spent yet
        gw.query(lambda s: _due_now(s, waiting.id))
        gw.wait_for(lambda: gw.runs()[1].status == "succeeded")

    assert len(model.requests) == 2


async def _due_now(store: Store, run_id: int) -> None:
    # The run waits on the store's real clock; make it due, as the night passing would.
    await store.open(migrate=False)
    await store.runs.retry_later(run_id, datetime.now(UTC), "budget reached; deferred")
    await store.close()


def test_the_day_starts_at_midnight_in_the_budgets_zone(tmp_path: Path) -> None:
    from gateway import config as config_module
    from gateway.assistant.budget import Budgets

    (tmp_path / "gateway.yaml").write_text("budget: {cost_per_day: 1, timezone: Asia/Tokyo}\n")
    config = config_module.load(tmp_path / "gateway.yaml", environ={})
    # 2026-11-30 16:30 UTC is 01:30 on 12-01 in Tokyo.
    budgets = Budgets(config, clock=lambda: datetime(2026, 11, 30, 16, 30, tzinfo=UTC))
    start, following = budgets.today()

    tokyo = ZoneInfo("Asia/Tokyo")
    assert start == datetime(2026, 12, 1, tzinfo=tokyo)
    assert following == datetime(2026, 12, 2, tzinfo=tokyo)


def test_two_replicas_on_postgresql_share_one_budget(tmp_path: Path, model: ScriptedModel) -> None:
    model.script(answer("First.", usage=USAGE))
    budget = rule("budget: {cost_per_day: 1.00}")
    with fresh_database_sync() as url:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with gateway(tmp_path / "a", model, budget, store=url) as first:
            run_once(first, "e1", 1)
        # Another replica, started after the first stopped: only the store remembers.
        with gateway(tmp_path / "b", model, budget, store=url) as second:
            stopped = run_once(second, "e2", 2)

    assert stopped.status == "failed" and "budget reached" in stopped.error
    assert len(model.requests) == 1


def test_the_dashboard_shows_a_budget_reached_today(tmp_path: Path, model: ScriptedModel) -> None:
    model.script(answer("First.", usage=USAGE))
    token = "budget-admin-token"
    rules = rule("budget: {cost_per_day: 1.50}")
    with gateway(tmp_path, model, rules, admin_token=token) as gw:
        before = _events_page(gw, token)
        run_once(gw, "e1", 1)
        after = _events_page(gw, token)

    assert "budget reached" not in before
    assert "budget reached: rule triage budget, cost 2.0000 of 1.5 USD" in after


def _events_page(gw: LiveGateway, token: str) -> str:
    login = gw.client.post("/ui/login", data={"token": token, "next": "/ui/events"})
    cookie = login.headers["set-cookie"].split(";")[0]
    name, _, value = cookie.partition("=")
    with httpx2.Client(base_url=gw.url, cookies={name: value}) as client:
        page = client.get("/ui/events")
        assert page.status_code == 200
        return str(page.text)
