"""The dashboard's operator views in Chromium: the overview (landing page) with its charts and
time ranges, a run's own page, the approvals inbox, small costs and the rule tester on a
schedule rule. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.assistant.models import dollars as money
from gateway.testing.fake_llm import ScriptedModel, answer, call
from tests.fixtures import requires_fixtures
from tests.live import APPROVED_TRIAGE, LiveGateway, live_gateway, priced_models
from tests.recording import CALLS
from tests.test_ui import TOKEN, log_in, model, off_loop, page, playwright_api, shot  # noqa: F401

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]

RULES = (
    APPROVED_TRIAGE
    + """
- name: weekly-report
  schedule: {cron: "0 8 * * MON"}
  actions:
    - test.record: {label: report}
"""
)
VIP = {"label": "vip", "delay_ms": 0, "order": None}


@pytest.fixture
def gateway(tmp_path: Path, model: ScriptedModel) -> Iterator[LiveGateway]:  # noqa: F811
    models = priced_models(model.url)  # one turn of 120 in, 30 out: $0.000036
    with live_gateway(tmp_path, RULES, admin_token=TOKEN, models=models) as gw:
        gw.url = gw.url.replace("127.0.0.1", "localhost")
        yield gw


def waiting(gateway: LiveGateway, count: int) -> None:
    off_loop(
        lambda: gateway.wait_for(lambda: len(gateway.runs(status="awaiting_approval")) >= count)
    )


def test_the_overview_is_the_landing_page_with_charts_that_update_live(
    gateway: LiveGateway,
    model: ScriptedModel,  # noqa: F811
    page: Any,  # noqa: F811
) -> None:
    expect = playwright_api.expect
    model.script(call("test__record", VIP, usage=(120, 30)), answer("Nothing.", usage=(10, 2)))
    gateway.post_order("e1", name="#1")
    waiting(gateway, 1)

    page.goto(gateway.url + "/ui/")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/overview$"))
    expect(page.locator("#card-events .figure")).to_have_text("1")
    expect(page.locator("#panel-events svg.chart rect title").first).to_contain_text("shop: 1")
    expect(page.locator("#panel-events .legend [data-source=shop]")).to_have_text("shop: 1")
    expect(page.locator("#panel-runs svg.chart")).to_contain_text("awaiting_approval")
    expect(page.locator("#card-approvals .figure")).to_have_text("1")
    expect(page.locator("#card-dead .figure")).to_have_text("0")
    expect(page.locator("#card-action")).to_contain_text("1 run(s), all replicas")
    expect(page.locator("#card-ingest")).to_contain_text("1 request(s), this replica")
    expect(page.locator("#panel-usage tr[data-rule=triage] .cost")).to_have_text("$0.000036")
    shot(page, "6-overview")

    gateway.post_order("e2", name="#2")  # no reload: the panel refreshes itself
    # The panel refreshes every 5 s: allow a few periods on a loaded machine.
    expect(page.locator("#panel-events .legend [data-source=shop]")).to_have_text(
        "shop: 2", timeout=20_000
    )

    page.click("nav.ranges >> text=last week")
    page.wait_for_url(re.compile(r"range=week$"))
    expect(page.locator("nav.ranges a.current")).to_have_text("last week")
    expect(page.locator("#card-events .figure")).to_have_text("2")
    shot(page, "7-overview-week")

    page.click("#card-approvals")
    page.wait_for_url(re.compile(r"/ui/approvals$"))


def test_the_approvals_inbox_shows_exact_arguments_and_decides_in_place(
    gateway: LiveGateway,
    model: ScriptedModel,  # noqa: F811
    page: Any,  # noqa: F811
) -> None:
    expect = playwright_api.expect
    model.script(
        call("test__record", VIP, usage=(120, 30)),
        call("test__record", VIP | {"label": "normal"}, usage=(120, 30)),
        answer("Done.", usage=(10, 2)),
        answer("Understood.", usage=(10, 2)),
    )
    gateway.post_order("e1", name="#1")
    waiting(gateway, 1)
    gateway.post_order("e2", name="#2")
    waiting(gateway, 2)

    log_in(page, gateway, "/ui/approvals")
    items = page.locator("article.approval-item")
    expect(items).to_have_count(2)
    first, second = items.nth(0), items.nth(1)
    expect(first.locator("pre.arguments")).to_contain_text('"label": "vip"')
    expect(first).to_contain_text("rule triage")
    expect(first.locator("a", has_text="event #1")).to_have_attribute("href", "/ui/events/1")
    expect(second.locator("pre.arguments")).to_contain_text('"label": "normal"')
    reason = second.locator("input[name=reason]")
    placeholder = reason.get_attribute("placeholder")
    assert reason.evaluate("e => e.scrollWidth <= e.clientWidth"), placeholder  # not cut off
    shot(page, "8-approvals")

    first.locator("button.approve").click()
    page.wait_for_url(re.compile(r"/ui/approvals\?"))
    expect(page.locator(".notice")).to_contain_text("approved")
    page.locator("article.approval-item input[name=reason]").fill("not a normal order")
    page.locator("article.approval-item button.reject").click()
    expect(page.locator(".notice")).to_contain_text("rejected")
    expect(page.locator("#no-approvals")).to_be_visible()
    done = off_loop(lambda: gateway.finished_runs(2))
    assert [r.status for r in done] == ["succeeded", "succeeded"]
    assert [c["label"] for c in CALLS] == ["vip"]
    [rejected] = [s for s in off_loop(lambda: gateway.steps(done[1].id)) if s.decision]
    assert (rejected.decision, rejected.reason) == ("rejected", "not a normal order")


def test_a_run_has_a_page_of_its_own_with_costs_in_significant_digits(
    gateway: LiveGateway,
    model: ScriptedModel,  # noqa: F811
    page: Any,  # noqa: F811
) -> None:
    expect = playwright_api.expect
    model.script(call("test__record", VIP, usage=(120, 30)), answer("Done.", usage=(10, 2)))
    gateway.post_order("e1", name="#1")
    waiting(gateway, 1)

    log_in(page, gateway, "/ui/runs/1")
    assert page.title().startswith("Run #1")
    expect(page.locator("h1")).to_contain_text("Run #1")
    expect(page.locator("#event-link")).to_have_attribute("href", "/ui/events/1#run-1")
    expect(page.locator("li.step.k-model").first).to_contain_text("$0.000036")
    page.locator("button.approve").click()
    page.wait_for_url(re.compile(r"/ui/runs/1\?"))
    expect(page.locator("li.run")).to_have_attribute("data-status", "succeeded")
    [run] = off_loop(gateway.runs)
    assert 0 < run.cost < 0.0001
    # Waiting for approval was no attempt at the call: run and call agree on attempt 1.
    [made] = [s for s in off_loop(lambda: gateway.steps(run.id)) if s.kind == "tool"]
    assert (run.attempt, made.attempt) == (1, 1)
    expect(page.locator("li.step.k-tool")).not_to_contain_text("attempt")
    # The API's (and so the page's) costs are in millionths of a dollar.
    expect(page.locator(".run-head")).to_contain_text(f"cost {money(round(run.cost, 6))}")
    shot(page, "9-run")


def test_the_rule_tester_says_a_schedule_rule_runs_on_its_schedule(
    gateway: LiveGateway,
    page: Any,  # noqa: F811
) -> None:
    log_in(page, gateway, "/ui/rules")
    page.fill("#event", '{"source": "shop", "type": "orders/create", "payload": {"name": "#7"}}')
    page.click("#try-rules")

    result = page.locator("article[data-rule=weekly-report]")
    playwright_api.expect(result).to_contain_text("a schedule rule: it runs on its schedule")
    assert "does not match" not in result.inner_text()
    shot(page, "10-rule-tester-schedule")
