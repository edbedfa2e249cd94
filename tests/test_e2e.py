"""End to end on loopback: signed webhooks in, the example rules in `rules/` run, and the fake
Jira and a real SMTP server see each side effect once, through failures and `kill -9`."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
import yaml
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.config import SourceConfig
from gateway.ingest.provider import PROVIDERS, Provider
from gateway.testing.fake_jira import FakeJira
from gateway.testing.server import serve_in_thread
from gateway.testing.smtp import SmtpServer
from tests.fixtures import TEST_SOURCES, load, requires_fixtures
from tests.live import LiveGateway, live_gateway
from tests.process import GatewayProcess

pytestmark = [requires_fixtures]

RULES = Path(__file__).resolve().parents[1] / "rules"
CHARGE = "ch_3QDisputedCharge1"


def example_rules(*names: str) -> str:
    """The example rule files, as shipped: the tests run exactly what users start from."""
    return "\n".join((RULES / f"{name}.yaml").read_text() for name in names)


def signer(source: str) -> Provider:
    config = SourceConfig.model_validate(TEST_SOURCES[source])
    return PROVIDERS[str(TEST_SOURCES[source]["provider"])](config)


# -- webhooks, as the providers send them --------------------------------------------------


def ci_failure(attempt: int = 1) -> tuple[bytes, dict[str, str]]:
    """The GitHub fixture: job `linters` of workflow CodeQL failed (signature over the body).
    A later `attempt` (a re-run failing again) is another event: another body, signed now."""
    fixture = load("github", "workflow_job.completed_failure")
    if attempt == 1:
        return fixture.body, dict(fixture.headers)
    payload = orjson.loads(fixture.body)
    payload["workflow_job"]["run_attempt"] = attempt
    body = orjson.dumps(payload)
    headers = {**fixture.headers, "X-GitHub-Delivery": f"attempt-{attempt}"}
    return body, headers | signer("ci").sign(body, headers, time.time())


def gitlab_pipeline(status: str, delivery: str) -> tuple[bytes, dict[str, str]]:
    """The GitLab fixture (a successful pipeline) with its status set; GitLab sends a token."""
    fixture = load("gitlab", "pipeline_hook")
    payload = orjson.loads(fixture.body)
    payload["object_attributes"]["status"] = status
    return orjson.dumps(payload), {**fixture.headers, "Idempotency-Key": delivery}


def order(event_id: str, **changes: Any) -> tuple[bytes, dict[str, str]]:
    """The Shopify order fixture (#9999, 1575.90 USD), with `changes`, signed for `shop`."""
    fixture = load("shopify", "orders_create")
    body = orjson.dumps({**orjson.loads(fixture.body), **changes}) if changes else fixture.body
    headers = {**fixture.headers, "X-Shopify-Event-Id": event_id}
    return body, headers | signer("shop").sign(body, headers, time.time())


def dispute(event_id: str, dispute_id: str, charge: str = CHARGE) -> tuple[bytes, dict[str, str]]:
    """A `charge.dispute.created` event. There is no dispute fixture: this is the Stripe
    fixture's envelope (invoice.payment_failed) with `type` and `data.object` replaced by a
    dispute as Stripe documents it, signed now with the stripe provider's `sign()`."""
    fixture = load("stripe", "invoice.payment_failed")
    envelope = orjson.loads(fixture.body)
    envelope["id"] = event_id
    envelope["type"] = "charge.dispute.created"
    envelope["data"] = {
        "object": {
            "id": dispute_id,
            "object": "dispute",
            "amount": 4200,
            "currency": "usd",
            "charge": charge,
            "payment_intent": "pi_3QDisputedIntent1",
            "reason": "fraudulent",
            "status": "needs_response",
            "is_charge_refundable": False,
            "livemode": False,
            "metadata": {},
            "created": int(time.time()),
        }
    }
    body = orjson.dumps(envelope)
    headers = {"Content-Type": fixture.headers["Content-Type"]}
    return body, headers | signer("stripe").sign(body, headers, time.time())


def post(client: httpx2.Client, source: str, webhook: tuple[bytes, dict[str, str]]) -> Any:
    response = client.post(f"/hooks/{source}", content=webhook[0], headers=webhook[1])
    # 202 for a new event, 200 for a redelivery (stored already).
    assert response.status_code in (200, 202), response.text
    return response.json()


# -- the outside world ---------------------------------------------------------------------


@pytest.fixture
def jira() -> FakeJira:
    return FakeJira(projects=("OPS", "FIN"))


@pytest.fixture
def jira_url(jira: FakeJira) -> Iterator[str]:
    with serve_in_thread(jira) as url:
        yield url


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def handlers(jira_url: str, smtp: SmtpServer) -> dict[str, Any]:
    return {
        "jira": {"server": jira_url, "email": "gateway@example.com", "token": "t", "timeout": 5},
        "email": smtp.settings(),
    }


@pytest.fixture
def remotes(jira_url: str, smtp: SmtpServer) -> dict[str, Any]:
    return handlers(jira_url, smtp)


def tools_called(gw: LiveGateway, run_id: int) -> list[tuple[str | None, str]]:
    return [(step.tool, step.status) for step in gw.steps(run_id)]


# -- the example rules, end to end ---------------------------------------------------------


def test_failed_github_job_opens_one_jira_ticket(
    tmp_path: Path, jira: FakeJira, remotes: dict[str, Any]
) -> None:
    with live_gateway(tmp_path, example_rules("ci"), handlers=remotes) as gw:
        first = post(gw.client, "ci", ci_failure())
        again = post(gw.client, "ci", ci_failure())  # GitHub redelivers: stored once
        [run] = gw.finished_runs(1)
        [step] = gw.steps(run.id)

    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert run.status == "succeeded"
    [issue] = jira.issues.values()
    assert issue.key == step.result["key"] == "OPS-1"
    assert issue.summary == "CI failed: Codertocat/Hello-World CodeQL / linters on main"
    assert issue.issue_type == "Bug"
    assert issue.labels[:3] == ["ci", "ci-failure", "github"]
    assert [label[:3] for label in issue.labels[3:]] == ["gw-"]  # the idempotency label
    assert "Failed steps: Run yarn run format-check" in (issue.description or "")


def test_failed_gitlab_pipeline_opens_a_ticket_and_a_successful_one_does_not(
    tmp_path: Path, jira: FakeJira, remotes: dict[str, Any]
) -> None:
    with live_gateway(tmp_path, example_rules("ci"), handlers=remotes) as gw:
        passed = post(gw.client, "gitlab", gitlab_pipeline("success", "pipeline-ok"))
        post(gw.client, "gitlab", gitlab_pipeline("failed", "pipeline-failed"))
        [run] = gw.finished_runs(1)
        routed = gw.wait_for(lambda: gw.event(passed["id"]).status != "pending")
        assert routed
        assert gw.event(passed["id"]).status == "unmatched"

    assert run.status == "succeeded"
    [issue] = jira.issues.values()
    assert issue.summary == "CI failed: gitlab-org/gitlab-test pipeline #31 on master"
    assert issue.labels[:3] == ["ci", "ci-failure", "gitlab"]


def test_big_shopify_order_emails_sales_once_in_text_and_html(
    tmp_path: Path, smtp: SmtpServer, remotes: dict[str, Any]
) -> None:
    with live_gateway(tmp_path, example_rules("shop"), handlers=remotes) as gw:
        post(gw.client, "shop", order("small-order", total_price="49.00", name="#1001"))
        post(gw.client, "shop", order("big-order"))
        [run] = gw.finished_runs(1)
        [step] = gw.steps(run.id)

    assert run.status == "succeeded"
    [delivery] = smtp.deliveries
    mail = delivery.message
    assert delivery.recipients == ["sales@example.com"]
    assert mail["To"] == "sales@example.com"
    assert mail["Subject"] == "Big order #9999: 1575.90 USD"
    assert mail["Message-ID"] == step.result["message_id"]
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    assert "Order #9999 totals 1575.90 USD." in text.get_content()
    assert "<b>#9999</b>" in html.get_content()


def test_repeat_dispute_on_a_charge_comments_on_its_ticket(
    tmp_path: Path, jira: FakeJira, remotes: dict[str, Any]
) -> None:
    with live_gateway(tmp_path, example_rules("stripe"), handlers=remotes) as gw:
        # Both at once: the ordering key (the charge) keeps the second from racing the first.
        post(gw.client, "stripe", dispute("evt_dispute_1", "dp_first"))
        post(gw.client, "stripe", dispute("evt_dispute_2", "dp_second"))
        post(gw.client, "stripe", dispute("evt_dispute_3", "dp_other", charge="ch_other"))
        first, second, other = gw.finished_runs(3)
        steps = {run.id: tools_called(gw, run.id) for run in (first, second, other)}

    assert [r.status for r in (first, second, other)] == ["succeeded"] * 3
    assert steps[first.id] == [
        ("jira.search", "succeeded"),
        ("jira.create_issue", "succeeded"),
        ("jira.comment", "skipped"),
    ]
    assert steps[second.id] == [
        ("jira.search", "succeeded"),
        ("jira.create_issue", "skipped"),
        ("jira.comment", "succeeded"),
    ]
    assert sorted(jira.issues) == ["FIN-1", "FIN-2"]
    disputed = jira.issues["FIN-1"]
    assert disputed.summary == f"Dispute on {CHARGE}: 42.00 USD (fraudulent)"
    assert disputed.labels[:2] == ["stripe-dispute", f"dispute-{CHARGE}"]
    [comment] = disputed.comments
    assert "Another dispute on this charge: dp_second" in comment.body
    assert jira.issues["FIN-2"].comments == []


# -- faults --------------------------------------------------------------------------------


def test_jira_failing_with_500_then_recovering_opens_one_ticket(
    tmp_path: Path, jira: FakeJira, remotes: dict[str, Any]
) -> None:
    jira.fail_next(2, 500, path="/issue")
    with live_gateway(tmp_path, example_rules("ci"), handlers=remotes) as gw:
        post(gw.client, "ci", ci_failure())
        [run] = gw.finished_runs(1)
        [step] = gw.steps(run.id)

    assert run.status == "succeeded"
    assert run.attempt == 3
    assert (step.attempt, step.result["key"]) == (3, "OPS-1")
    assert list(jira.issues) == ["OPS-1"]


def test_ticket_created_but_response_lost_is_found_by_its_label_not_created_again(
    tmp_path: Path, jira: FakeJira, remotes: dict[str, Any]
) -> None:
    jira.drop_response_after_commit_next()
    with live_gateway(tmp_path, example_rules("ci"), handlers=remotes) as gw:
        post(gw.client, "ci", ci_failure())
        [run] = gw.finished_runs(1)
        [step] = gw.steps(run.id)

    assert run.status == "succeeded"
    assert run.attempt == 2
    assert list(jira.issues) == ["OPS-1"]
    assert step.result["key"] == "OPS-1"
    creates = [r for r in jira.requests if r.method == "POST" and r.path.endswith("/issue")]
    assert len(creates) == 1


def test_mail_server_down_for_a_while_gets_one_mail_after_it_is_back(
    tmp_path: Path, smtp: SmtpServer, remotes: dict[str, Any]
) -> None:
    patient = {"max_attempts": 100, "backoff_base": 0.05, "backoff_max": 0.1}
    with live_gateway(tmp_path, example_rules("shop"), handlers=remotes, worker=patient) as gw:
        with smtp.down():
            post(gw.client, "shop", order("big-order"))
            [waiting] = gw.wait_for(lambda: [r for r in gw.runs() if r.attempt >= 3])
            assert waiting.status in ("pending", "running")
            assert smtp.deliveries == []
        [run] = gw.finished_runs(1)
        [step] = gw.steps(run.id)

    assert run.status == "succeeded"
    assert step.attempt >= 3
    [mail] = smtp.messages
    assert mail["Message-ID"] == step.result["message_id"]


# -- kill -9 -------------------------------------------------------------------------------


class SlowResponses:
    """Delays the response, not the work, of one endpoint: a kill in that window leaves a
    ticket created whose creator never heard back."""

    def __init__(self, app: ASGIApp, method: str, path: str, delay: float) -> None:
        self.app, self.method, self.path, self.delay = app, method, path, delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) != (self.method, self.path):
            await self.app(scope, receive, send)
            return

        async def delayed(message: Message) -> None:
            if message["type"] == "http.response.start":
                await asyncio.sleep(self.delay)
            await send(message)

        await self.app(scope, receive, delayed)


def read_db(path: Path, query: str) -> list[Any]:
    with sqlite3.connect(path) as db:
        return db.execute(query).fetchall()


def wait_until(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out; last value {value!r}"
        time.sleep(0.01)
    return value


def finished_runs(database: Path) -> int:
    [(count,)] = read_db(
        database, "SELECT count(*) FROM runs WHERE status IN ('succeeded', 'failed', 'dead')"
    )
    return int(count)


EVENTS = 10


@pytest.mark.slow
def test_kill_9_while_actions_run_then_restart_handles_every_event_once(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    jira = FakeJira()
    database = tmp_path / "gateway.db"
    (tmp_path / "rules").mkdir()
    for name in ("ci", "shop"):
        shutil.copy(RULES / f"{name}.yaml", tmp_path / "rules")
    with serve_in_thread(SlowResponses(jira, "POST", "/rest/api/2/issue", 0.5)) as jira_url:
        config = tmp_path / "gateway.yaml"
        document = {
            "store": f"sqlite:///{database}",
            "sources": TEST_SOURCES,
            "rules": str(tmp_path / "rules"),
            "handlers": handlers(jira_url, smtp),
            "worker": {"concurrency": 8, "backoff_base": 0.05, "backoff_max": 0.2},
        }
        config.write_text(yaml.safe_dump(document, sort_keys=False))

        gateway = GatewayProcess(config).start()
        try:
            with httpx2.Client(base_url=gateway.url, timeout=10) as client:
                for n in range(EVENTS):
                    post(client, "ci", ci_failure(attempt=n + 2))
                    post(client, "shop", order(f"crash-order-{n}", name=f"#crash-{n}"))
            # Tickets exist whose responses are still held back: kill now.
            wait_until(lambda: len(jira.issues) >= 3)
        finally:
            gateway.kill()
        unfinished = read_db(database, "SELECT count(*) FROM runs WHERE status != 'succeeded'")
        assert unfinished[0][0] > 0, "the kill came too late to interrupt anything"

        restarted = GatewayProcess(config).start()
        try:
            wait_until(lambda: finished_runs(database) == 2 * EVENTS)
        finally:
            restarted.stop()

    assert read_db(database, "SELECT status, count(*) FROM event_status GROUP BY status") == [
        ("routed", 2 * EVENTS)
    ]
    assert read_db(database, "SELECT status, count(*) FROM runs GROUP BY status") == [
        ("succeeded", 2 * EVENTS)
    ]
    # Jira: one ticket per failure, each the one its step recorded; the held-back ones were
    # found by their label after the restart, not created again.
    created = read_db(database, "SELECT result FROM steps WHERE tool = 'jira.create_issue'")
    assert sorted(json.loads(row[0])["key"] for row in created) == sorted(jira.issues)
    assert len(jira.issues) == EVENTS
    assert "step.recovered" in restarted.output()
    # Mail: SMTP has no way to ask "did you get it?", so a crash between sending and recording
    # resends with the same Message-ID (receivers drop it). No run may send two different ones.
    message_ids: dict[str, set[str]] = defaultdict(set)
    for mail in smtp.messages:
        run_id = str(mail["X-Gateway-Idempotency-Key"]).split(".")[0]
        message_ids[run_id].add(str(mail["Message-ID"]))
    assert len(message_ids) == EVENTS
    assert all(len(ids) == 1 for ids in message_ids.values())
    assert len({str(mail["Message-ID"]) for mail in smtp.messages}) == EVENTS
