"""Evals kept in the eval store: the dashboard's eval list and per-event diff page over plain
HTTP, `gateway evals` to list and delete, and a delete that forgets what an eval copied in."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.store import Store
from gateway.testing.fake_jira import FakeJira
from gateway.testing.fake_llm import ScriptedModel, answer, call
from gateway.testing.server import serve_in_thread
from gateway.testing.smtp import SmtpServer
from tests.fixtures import requires_fixtures
from tests.live import LiveGateway, live_gateway
from tests.test_eval import CANDIDATE, CREATE, EXPECTING, LIVE, LIVE_ISSUE, eval_cli

pytestmark = requires_fixtures

TOKEN = "eval-dashboard-token-of-32-chars!"
# 50: the candidate files no issue; 500: the same calls; 950: a new summary ("Big #3").
PRICES = ("50.00", "500.00", "950.00")


@pytest.fixture
def evaluated(tmp_path: Path) -> Iterator[tuple[LiveGateway, dict[str, object]]]:
    """A live gateway that ran LIVE for three orders, and one eval of CANDIDATE over them."""
    fake = FakeJira(projects=("OPS",))
    with serve_in_thread(fake) as url, SmtpServer() as smtp:
        handlers = {"jira": {"server": url, "user": "u", "password": "p"}, "email": smtp.settings()}
        with live_gateway(tmp_path, LIVE, handlers=handlers, admin_token=TOKEN) as gw:
            for i, price in enumerate(PRICES, start=1):
                gw.post_order(f"e{i}", name=f"#{i}", total_price=price)
            gw.finished_runs(3)
            code, output, report = eval_cli(tmp_path, CANDIDATE, "--last", "3")
            assert code == 0, output
            assert f"kept as eval {report['id']}" in output
            gw.url = gw.url.replace("127.0.0.1", "localhost")
            yield gw, report


@contextmanager
def logged_in(gw: LiveGateway) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=gw.url, timeout=30) as client:
        answer = client.post("/ui/login", data={"token": TOKEN, "next": "/ui/evals"})
        assert answer.status_code == 303, answer.text
        # The session cookie is Secure; this test speaks plain HTTP on loopback, so carry it.
        for name, value in answer.cookies.items():
            client.headers["cookie"] = f"{name}={value}"
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def eval_store_counts(path: Path) -> tuple[int, int, int]:
    async def read() -> tuple[int, int, int]:
        store = Store(f"sqlite:///{path}")
        await store.open()
        try:
            events = await store.events.find(limit=1000)
            runs = await store.runs.find(limit=1000)
            return len(events), len(runs), len(await store.evals.latest(100))
        finally:
            await store.close()

    return asyncio.run(read())


def test_the_eval_page_lists_each_eval_with_its_totals(
    evaluated: tuple[LiveGateway, dict[str, object]], tmp_path: Path
) -> None:
    gw, report = evaluated
    with logged_in(gw) as client:
        page = client.get("/ui/evals")

    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    row = re.search(r'<tr data-eval="1">.*?</tr>', page.text, re.S)
    assert row is not None
    cells = [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td.*?>(.*?)</td>", row[0], re.S)
    ]
    assert cells[2] == str((tmp_path / "candidate").resolve())
    assert cells[3:5] == ["3", "2"]  # events, changed
    assert cells[8] == "none"  # no rule has expectations
    assert report["totals"]["changed"] == 2  # type: ignore[index]


def test_the_eval_diff_shows_each_events_calls_side_by_side_with_the_changed_arguments(
    evaluated: tuple[LiveGateway, dict[str, object]],
) -> None:
    gw, _ = evaluated
    with logged_in(gw) as client:
        page = client.get("/ui/evals/1")
        changed_only = client.get("/ui/evals/1", params={"changed": "1"})
        missing = client.get("/ui/evals/99")

    assert page.status_code == 200
    articles = dict(re.findall(r'data-event="(\d+)">(.*?)</article>', page.text, re.S))
    assert sorted(articles) == ["1", "2", "3"]
    small, same, big = articles["1"], articles["2"], articles["3"]
    assert "changed" in small and "same calls" in same and "changed" in big
    # Live made both calls; the candidate only proposes (shadowed) the email for #1.
    live, candidate = re.findall(r'<div class="side (?:live|candidate)">(.*?)</dl>', small, re.S)
    assert "jira.create_issue" in live and "email.send" in live
    assert "jira.create_issue" not in candidate and "shadowed" in candidate
    assert '<span class="del">-jira.create_issue' in small
    # #3's summary changed: the argument, old and new, in the readable table.
    change = re.search(r'<table class="list changes">.*?</table>', big, re.S)
    assert change is not None
    assert "summary" in change[0]
    assert "&#34;Order #3&#34;" in change[0] and "&#34;Big #3&#34;" in change[0]
    assert sorted(re.findall(r'data-event="(\d+)"', changed_only.text)) == ["1", "3"]
    assert missing.status_code == 404


def test_an_eval_is_deleted_from_the_dashboard_with_what_it_copied(
    evaluated: tuple[LiveGateway, dict[str, object]], tmp_path: Path
) -> None:
    gw, _ = evaluated
    eval_db = tmp_path / "eval.db"
    assert eval_store_counts(eval_db) == (3, 3, 1)
    with logged_in(gw) as client:
        forged = client.post("/ui/evals/1/delete", data={"csrf": "forged", "confirm": "yes"})
        csrf = csrf_of(client.get("/ui/evals").text)
        asked = client.post("/ui/evals/1/delete", data={"csrf": csrf})
        kept = eval_store_counts(eval_db)
        deleted = client.post("/ui/evals/1/delete", data={"csrf": csrf, "confirm": "yes"})
        again = client.post("/ui/evals/1/delete", data={"csrf": csrf, "confirm": "yes"})
        listed = client.get("/ui/evals")

    assert forged.status_code == 403
    # The first press only asks: the eval, what deleting it loses, and the button that does it.
    assert asked.status_code == 200 and kept == (3, 3, 1)
    assert "Delete eval 1?" in asked.text and "cannot be undone" in asked.text
    assert 'name="confirm" value="yes"' in asked.text
    assert deleted.status_code == 303
    assert deleted.headers["location"] == "/ui/evals?notice=eval+1+deleted"
    assert again.status_code == 404
    assert "No eval yet" in listed.text
    assert eval_store_counts(eval_db) == (0, 0, 0)
    assert len(gw.runs()) == 3  # the live store is as it was


def test_evals_lists_and_deletes_from_the_command_line(
    evaluated: tuple[LiveGateway, dict[str, object]], tmp_path: Path
) -> None:
    config = str(tmp_path / "gateway.yaml")
    runner = CliRunner()

    listed = runner.invoke(app, ["evals", "--config", config, "--json"])
    unknown = runner.invoke(app, ["evals", "--config", config, "--delete", "7"])
    deleted = runner.invoke(app, ["evals", "--config", config, "--delete", "1"])
    empty = runner.invoke(app, ["evals", "--config", config, "--json"])

    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert (row["id"], row["events"], row["changed"], row["pass_rate"]) == (1, 3, 2, None)
    assert unknown.exit_code == 1 and "no eval 7" in unknown.output
    assert deleted.exit_code == 0 and "eval 1 deleted" in deleted.output
    assert json.loads(empty.output) == []


def test_the_eval_page_with_no_eval_store_yet_creates_none(tmp_path: Path) -> None:
    with live_gateway(tmp_path, "[]", admin_token=TOKEN) as gw:
        gw.url = gw.url.replace("127.0.0.1", "localhost")
        with logged_in(gw) as client:
            page = client.get("/ui/evals")
            missing = client.get("/ui/evals/1")

    assert page.status_code == 200 and "No eval yet" in page.text
    assert missing.status_code == 404
    assert not (tmp_path / "eval.db").exists()


def test_the_admin_api_lists_reads_and_deletes_evals(
    evaluated: tuple[LiveGateway, dict[str, object]],
) -> None:
    gw, report = evaluated
    bearer = {"authorization": f"Bearer {TOKEN}"}

    listed = gw.client.get("/api/evals", headers=bearer)
    one = gw.client.get("/api/evals/1", headers=bearer)
    deleted = gw.client.delete("/api/evals/1", headers=bearer)
    gone = gw.client.get("/api/evals/1", headers=bearer)

    assert listed.status_code == 200
    [row] = listed.json()["items"]
    assert (row["id"], row["events"], row["changed"], row["pass_rate"]) == (1, 3, 2, None)
    assert one.status_code == 200
    body = one.json()
    assert body["eval"] == row
    # The same report the CLI wrote, in the same shape.
    assert body["report"]["totals"] == report["totals"]
    changes = body["report"]["events"][2]["changes"]
    assert changes == [
        {
            "tool": "jira.create_issue",
            "argument": "summary",
            "live": "Order #3",
            "candidate": "Big #3",
        }
    ]
    assert deleted.json() == {"id": 1, "deleted": True}
    assert gone.status_code == 404 and gone.json()["detail"] == "no eval 1"


def test_the_eval_page_shows_approvals_that_would_be_asked_and_failed_expectations(
    tmp_path: Path,
) -> None:
    fake = FakeJira(projects=("OPS",))
    with (
        serve_in_thread(fake) as url,
        ScriptedModel(
            call("jira__create_issue", CREATE, usage=(120, 30)),
            answer("Filed OPS-1.", usage=(150, 6)),
            answer("Nothing to do.", usage=(90, 4)),
        ) as model,
    ):
        handlers = {"jira": {"server": url, "user": "u", "password": "p"}}
        models = {"default": {"api": "responses", "base_url": model.url, "model": "m"}}
        with live_gateway(
            tmp_path, LIVE_ISSUE, handlers=handlers, models=models, admin_token=TOKEN
        ) as gw:
            gw.post_order("e1", name="#1")
            gw.post_order("e2", name="#2")
            gw.finished_runs(2)
            code, output, _ = eval_cli(tmp_path, EXPECTING, "--last", "2", "--concurrency", "1")
            assert code == 1, output
            gw.url = gw.url.replace("127.0.0.1", "localhost")
            with logged_in(gw) as client:
                listed = client.get("/ui/evals")
                page = client.get("/ui/evals/1")

    assert re.search(r'<td class="pass-rate">\s*50% of 2', listed.text)
    failures = re.search(r'<ul id="failures">(.*?)</ul>', page.text, re.S)
    assert failures is not None
    assert 'event <a href="/ui/evals/1?page=1#event-2">2</a> rule triage' in failures[1]
    assert "answer_matches: ^Filed" in failures[1]
    articles = dict(re.findall(r'data-event="(\d+)">(.*?)</article>', page.text, re.S))
    candidate = re.search(r'<div class="side candidate">(.*?)</dl>', articles["1"], re.S)
    assert candidate is not None
    assert "would ask for approval" in candidate[1]
    assert re.search(r'<dd class="approvals">1</dd>', candidate[1])
    assert re.search(r'<dd class="tokens">270 in / 36 out</dd>', candidate[1])


def test_an_evals_events_are_paged_with_the_changed_filter_kept(
    evaluated: tuple[LiveGateway, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report holds up to 1,000 events: the page shows EVENTS_PER_PAGE at a time (2 here)."""
    import gateway.ui.evals

    monkeypatch.setattr(gateway.ui.evals, "EVENTS_PER_PAGE", 2)
    gw, _ = evaluated
    shown = {}
    with logged_in(gw) as client:
        for query in ("", "?page=2", "?page=9", "?page=x", "?changed=1&page=2"):
            answer = client.get(f"/ui/evals/1{query}")
            assert answer.status_code == 200, query
            shown[query] = (re.findall(r'data-event="(\d+)"', answer.text), answer.text)

    assert shown[""][0] == ["1", "2"] and "page 1 of 2" in shown[""][1]
    assert 'href="/ui/evals/1?page=2"' in shown[""][1]  # next
    assert shown["?page=2"][0] == ["3"] and 'href="/ui/evals/1?page=1"' in shown["?page=2"][1]
    assert shown["?page=9"][0] == ["3"]  # past the end: the last page
    assert shown["?page=x"][0] == ["1", "2"]  # not a number: the first
    # Only the changed ones (#1 and #3) fit one page of 2: no page 2, the first is shown.
    assert shown["?changed=1&page=2"][0] == ["1", "3"]
    assert "page 1 of 1" in shown["?changed=1&page=2"][1]
