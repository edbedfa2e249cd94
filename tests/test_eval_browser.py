"""The eval pages in a real headless Chromium: an operator opens the list of evals, reads one
eval's diff, narrows it to the changed events, and deletes it. Screenshots in tests/artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gateway.testing.fake_jira import FakeJira
from gateway.testing.server import serve_in_thread
from gateway.testing.smtp import SmtpServer
from tests.fixtures import requires_fixtures
from tests.live import live_gateway
from tests.test_eval import CANDIDATE, LIVE, eval_cli
from tests.test_eval_ui import PRICES
from tests.test_ui import TOKEN, log_in, off_loop, page, playwright_api, shot  # noqa: F401

pytestmark = requires_fixtures


def test_operator_reads_an_evals_diff_and_deletes_it(tmp_path: Path, page: Any) -> None:  # noqa: F811
    expect = playwright_api.expect
    fake = FakeJira(projects=("OPS",))
    with serve_in_thread(fake) as url, SmtpServer() as smtp:
        handlers = {"jira": {"server": url, "user": "u", "password": "p"}, "email": smtp.settings()}
        with live_gateway(tmp_path, LIVE, handlers=handlers, admin_token=TOKEN) as gw:
            for i, price in enumerate(PRICES, start=1):
                gw.post_order(f"e{i}", name=f"#{i}", total_price=price)
            off_loop(lambda: gw.finished_runs(3))
            code, output, _ = off_loop(lambda: eval_cli(tmp_path, CANDIDATE, "--last", "3"))
            assert code == 0, output
            gw.url = gw.url.replace("127.0.0.1", "localhost")

            log_in(page, gw, "/ui/evals")
            row = page.locator("tr[data-eval='1']")
            expect(row.locator("td.changed")).to_have_text("2")
            expect(page.locator("nav a.current")).to_have_text("Evals")
            shot(page, "eval-1-list")

            row.locator("a").first.click()
            page.wait_for_url(re.compile(r"/ui/evals/1$"))
            big = page.locator("article[data-event='3']")
            expect(big.locator(".side.live")).to_contain_text("jira.create_issue")
            expect(big.locator(".side.candidate")).to_contain_text("shadowed")
            expect(big.locator("table.changes")).to_contain_text("Big #3")
            expect(big.locator("pre.diff .add")).to_contain_text("+jira.create_issue")
            expect(page.locator("article[data-event='2']")).to_contain_text("same calls")
            shot(page, "eval-2-diff")

            page.click("text=only the changed ones")
            expect(page.locator("article.eval-event")).to_have_count(2)

            page.click("button:has-text('Delete this eval')")
            expect(page.locator("h1")).to_contain_text("Delete eval 1?")
            page.click("text=Keep it")
            page.wait_for_url(re.compile(r"/ui/evals/1$"))
            page.click("button:has-text('Delete this eval')")
            page.click("button:has-text('Delete for good')")
            page.wait_for_url(re.compile(r"/ui/evals\?notice="))
            expect(page.locator(".notice")).to_contain_text("eval 1 deleted")
            expect(page.locator("#evals")).to_contain_text("No eval yet")
            shot(page, "eval-3-deleted")
