"""The dashboard in a real headless Chromium (Debian's, driven by Playwright; nothing installed).

One operator's session: log in, open an event, read its run timeline, approve the pending
call and watch the run complete, replay the event. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest

from gateway.testing.fake_llm import ScriptedModel, answer, call
from tests.fixtures import requires_fixtures
from tests.live import LiveGateway, live_gateway
from tests.recording import CALLS

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
TOKEN = "dashboard-test-token"
T = TypeVar("T")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(
        f"{CHROMIUM} is missing (apt-get install chromium); CI must have it",
        allow_module_level=True,
    )
if os.environ.get("CI"):  # CI must run this test: a missing package is a failure there
    import playwright.sync_api as playwright_api
else:
    playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]

RULES = """
- name: triage
  on: {source: shop, event: orders/create}
  assistant:
    model: default
    instructions: You triage new orders.
    prompt: "New order {{ payload.name }} from {{ payload.email }}"
    tools: [test.record]
    policy:
      test.record: {label: [vip, normal], approve: true}
- name: triage-shadow
  on: {source: shop, event: orders/create}
  mode: shadow
  actions:
    - test.record: {label: "shadow {{ payload.name }}"}
"""


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as scripted:
        yield scripted


@pytest.fixture
def gateway(tmp_path: Path, model: ScriptedModel) -> Iterator[LiveGateway]:
    models = {"default": {"api": "responses", "base_url": model.url, "model": "scripted-model"}}
    with live_gateway(tmp_path, RULES, admin_token=TOKEN, models=models) as gw:
        # Chromium counts http://localhost as a secure context: the Secure cookie is kept.
        gw.url = gw.url.replace("127.0.0.1", "localhost")
        yield gw


@pytest.fixture
def page() -> Iterator[Any]:
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def off_loop(read: Callable[[], T]) -> T:
    """Store reads use asyncio.run, which cannot run in the thread Playwright's loop holds."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(read).result()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"ui-{name}.png"), full_page=True)


def log_in(page: Any, gw: LiveGateway, then: str = "/ui/events") -> None:
    page.goto(gw.url + then)
    assert "/ui/login" in page.url
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(then) + r"$"))


def test_operator_approves_a_pending_call_and_replays_the_event(
    gateway: LiveGateway, model: ScriptedModel, page: Any
) -> None:
    expect = playwright_api.expect
    model.script(
        call("test__record", {"label": "vip", "delay_ms": 0, "order": None}, usage=(120, 30)),
        answer("Recorded the VIP order.", usage=(160, 8)),
        answer("Already recorded.", usage=(90, 4)),  # the replayed run
    )
    gateway.post_order("e1", name="#1001", email="a@example.com")
    off_loop(lambda: gateway.wait_for(lambda: gateway.runs(status="awaiting_approval")))

    log_in(page, gateway)
    row = page.locator("tr.event-row").first
    expect(row).to_contain_text("orders/create")
    expect(row).to_contain_text("awaiting_approval")
    shot(page, "1-events")

    row.locator("a").first.click()
    timeline = page.locator("#timeline")
    expect(timeline.locator(".t-received")).to_contain_text("Received")
    expect(timeline.locator(".t-matched")).to_contain_text("triage")
    run = timeline.locator("li.run[data-status=awaiting_approval]")
    expect(run).to_contain_text("Model turn")
    expect(run).to_contain_text("tokens 120 in / 30 out")
    expect(run.locator("li.step.k-tool")).to_contain_text("test.record")
    shadow = timeline.locator("li.run", has_text="triage-shadow")
    expect(shadow).to_contain_text("shadow mode")
    expect(shadow.locator("li.step.s-shadowed")).to_contain_text("Would have called test.record")
    shot(page, "2-awaiting-approval")
    assert CALLS == []

    run.locator("button.approve").click()
    expect(page.locator(".notice")).to_contain_text("approved")
    done = page.locator("#timeline li.run", has_text="Run 1")
    expect(done).to_have_attribute("data-status", "succeeded")  # the page refreshes itself
    expect(done.locator("p.answer")).to_have_text("Recorded the VIP order.")
    expect(done).to_contain_text("approved by dashboard")
    shot(page, "3-approved-and-succeeded")
    assert [c["label"] for c in CALLS] == ["vip"]

    page.click("#replay")
    expect(page.locator(".notice")).to_contain_text("replayed: run(s) 3, 4")
    expect(page.locator("#run-3")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#run-4")).to_have_attribute("data-status", "succeeded")
    shot(page, "4-replayed")
    assert len(off_loop(gateway.runs)) == 4


def test_session_cookie_is_signed_secure_httponly_and_strict(
    gateway: LiveGateway, page: Any
) -> None:
    log_in(page, gateway)
    [cookie] = page.context.cookies()

    assert cookie["name"] == "gateway_session"
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")
    assert TOKEN not in cookie["value"]
    assert cookie["path"] == "/ui"


def test_wrong_token_does_not_log_in(gateway: LiveGateway, page: Any) -> None:
    page.goto(gateway.url + "/ui/events")
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")

    playwright_api.expect(page.locator(".problem")).to_contain_text("not the admin token")
    assert page.context.cookies() == []


def test_rule_tester_shows_the_rendered_prompt_without_running_anything(
    gateway: LiveGateway, page: Any
) -> None:
    expect = playwright_api.expect
    log_in(page, gateway, "/ui/rules")
    page.fill(
        "#event",
        '{"source": "shop", "type": "orders/create",'
        ' "payload": {"name": "#77", "email": "t@example.com"}}',
    )
    page.click("#try-rules")

    result = page.locator("article[data-rule=triage]")
    expect(result.locator("pre.prompt")).to_have_text("New order #77 from t@example.com")
    shadow = page.locator("article[data-rule=triage-shadow]")
    expect(shadow).to_contain_text("would shadow")
    expect(shadow).to_contain_text("shadow #77")
    shot(page, "5-rule-tester")
    assert off_loop(gateway.runs) == []
    assert CALLS == []


def test_forms_without_the_csrf_token_are_refused(
    gateway: LiveGateway, model: ScriptedModel, page: Any
) -> None:
    model.script(answer("Nothing to do."), answer("Still nothing."))
    gateway.post_order("e1", name="#1", email="a@example.com")
    log_in(page, gateway)
    [cookie] = page.context.cookies()
    with httpx2.Client(base_url=gateway.url, cookies={cookie["name"]: cookie["value"]}) as client:
        forged = client.post("/ui/events/1/replay", data={"csrf": "guess"})
        missing = client.post("/ui/events/1/replay", data={})
        assert (forged.status_code, missing.status_code) == (403, 403)
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/events").text)
        assert token is not None
        accepted = client.post("/ui/events/1/replay", data={"csrf": token.group(1)})
        assert accepted.status_code == 303
    assert len(off_loop(lambda: gateway.finished_runs(4))) == 4


def test_the_event_list_shows_new_events_without_a_reload(
    gateway: LiveGateway, model: ScriptedModel, page: Any
) -> None:
    model.script(answer("Nothing to do."))
    log_in(page, gateway)
    playwright_api.expect(page.locator("#event-rows")).to_contain_text("No events yet.")

    gateway.post_order("e1", name="#1", email="a@example.com")

    row = page.locator("tr.event-row[data-event='1']")
    playwright_api.expect(row).to_contain_text("triage: succeeded")
    assert "/ui/events" in page.url
    assert len(off_loop(lambda: gateway.finished_runs(2))) == 2
