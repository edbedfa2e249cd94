"""Approvals bind to the exact call: a reused tool-call id never runs unapproved arguments.

A model (through the real `openai` client, against the scripted model on loopback, over the
Responses API and Chat Completions) proposes calls; an operator decides through the API, the
dashboard or the CLI; the store is SQLite or PostgreSQL. What ran is compared with what was
approved and with what the journal says.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import JSON, DateTime, LargeBinary, column, insert, table
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from gateway import cli
from gateway.store import Run, Step, Store, database
from gateway.testing.fake_llm import ScriptedModel, answer, call, call_ids, turn
from gateway.testing.fake_llm import Step as ScriptedStep
from gateway.testing.server import serve_in_thread
from tests.fixtures import requires_fixtures
from tests.live import LiveGateway, live_gateway
from tests.postgres import fresh_database_sync
from tests.recording import CALLS

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]

TOKEN = "approvals-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APIS = ["responses", "chat"]
FINISHED = ("succeeded", "failed", "dead")

RECORD = """
- name: triage
  on: {source: shop, event: orders/create}
  assistant:
    model: default
    instructions: You triage new orders.
    prompt: "New order {{ payload.name }}"
    tools: [test.record]
    policy:
      test.record: {label: [vip, normal, refund]APPROVE}
"""
WITH_APPROVAL = RECORD.replace("APPROVE", ", approve: true")
WITHOUT_APPROVAL = RECORD.replace("APPROVE", "")
FORWARD_RULE = """
- name: forward
  on: {source: shop, event: orders/create}
  assistant:
    model: default
    prompt: "Forward order {{ payload.name }}"
    tools: [http.request]
    policy:
      http.request: {url: {hosts: [127.0.0.1]}, approve: true}
"""
VIP = {"label": "vip", "delay_ms": 0, "order": 1}
NORMAL = {"label": "normal", "delay_ms": 0, "order": 2}
REFUND = {"label": "refund", "delay_ms": 0, "order": 3}


# ---------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The gateway's store on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    with fresh_database_sync() as url:
        yield url


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as scripted:
        yield scripted


@pytest.fixture
def service() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP service that keeps every request it receives: the side effect."""
    received: list[dict[str, Any]] = []

    async def orders(request: Request) -> JSONResponse:
        received.append({"headers": dict(request.headers), "json": await request.json()})
        return JSONResponse({"accepted": True})

    with serve_in_thread(Starlette(routes=[Route("/orders", orders, methods=["POST"])])) as url:
        yield url, received


def gateway(
    tmp_path: Path,
    model: ScriptedModel,
    rules: str,
    *,
    api: str = "responses",
    store: str | None = None,
) -> AbstractContextManager[LiveGateway]:
    overrides: dict[str, Any] = {
        "admin_token": TOKEN,
        "models": {"default": {"api": api, "base_url": model.url, "model": "scripted-model"}},
        "handlers": {"http": {"allow_hosts": ["127.0.0.1"]}},
    }
    if store is not None:
        overrides["store"] = store
    return live_gateway(tmp_path, rules, **overrides)


@contextmanager
def waiting_call(
    tmp_path: Path,
    model: ScriptedModel,
    *script: ScriptedStep,
    rules: str = WITH_APPROVAL,
    api: str = "responses",
    store: str | None = None,
) -> Iterator[tuple[LiveGateway, Run, Step]]:
    """A gateway whose one run waits for approval of the first call `script` makes."""
    model.script(*script)
    with gateway(tmp_path, model, rules, api=api, store=store) as gw:
        gw.post_order("e1", name="#1")
        run, steps = next_stop(gw, set())
        [step] = waiting(steps)
        yield gw, run, step


def next_stop(gw: LiveGateway, seen: set[int]) -> tuple[Run, list[Step]]:
    """Wait until the (only) run waits on a step not in `seen`, or has ended."""

    def stopped() -> tuple[Run, list[Step]] | None:
        runs = gw.runs()
        if len(runs) != 1:
            return None
        [run] = runs
        steps = gw.steps(run.id)
        if run.status in FINISHED or (
            run.status == "awaiting_approval" and [s for s in waiting(steps) if s.id not in seen]
        ):
            return run, steps
        return None

    return gw.wait_for(stopped)


def waiting(steps: list[Step]) -> list[Step]:
    return [s for s in steps if s.status == "awaiting_approval"]


def view(gw: LiveGateway, step: Step) -> dict[str, Any]:
    """The step as the API shows it to an approver."""
    detail = gw.client.get(f"/api/runs/{step.run_id}", headers=AUTH).json()
    [found] = [s for s in detail["steps"] if s["id"] == step.id]
    return found  # type: ignore[no-any-return]


def approve(gw: LiveGateway, step: Step, digest: str | None = None) -> httpx2.Response:
    """Approve through the API, with the digest the approver was shown (or `digest`)."""
    shown = digest if digest is not None else view(gw, step).get("arguments_digest")
    return gw.client.post(
        f"/api/steps/{step.id}/approve", headers=AUTH, json={"by": "alice", "digest": shown}
    )


def tool_steps(steps: list[Step]) -> list[Step]:
    return [s for s in steps if s.kind == "tool"]


def other_digest() -> str:
    return hashlib.sha256(b"some other arguments").hexdigest()


class Dashboard:
    """An operator's dashboard session (the Secure cookie is carried by hand over HTTP)."""

    def __init__(self, gw: LiveGateway) -> None:
        login = gw.client.post("/ui/login", data={"token": TOKEN, "next": "/ui/events"})
        assert login.status_code == 303, login.text
        cookie = re.search(r"gateway_session=([^;]+)", login.headers["set-cookie"])
        assert cookie is not None
        self.client = httpx2.Client(base_url=gw.url, cookies={"gateway_session": cookie[1]})

    def event_page(self, event_id: int) -> str:
        page = self.client.get(f"/ui/events/{event_id}")
        assert page.status_code == 200
        return page.text

    def approve(self, step: Step, event_id: int, digest: str | None) -> httpx2.Response:
        csrf = re.search(r'name="csrf" value="([^"]+)"', self.event_page(event_id))
        assert csrf is not None
        form = {"csrf": csrf[1]} | ({"digest": digest} if digest is not None else {})
        return self.client.post(f"/ui/steps/{step.id}/approve", data=form)

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()


def cli_approve(tmp_path: Path, step: Step, *options: str, input: str | None = None) -> Any:
    config = str(tmp_path / "gateway.yaml")
    return CliRunner().invoke(
        cli.app, ["approve", str(step.id), "--config", config, *options], input=input
    )


def set_step(gw: LiveGateway, step: Step, **values: Any) -> None:
    """Write to a stored step directly, as anyone with write access to the database can."""

    async def write() -> None:
        store = Store(gw.app.state.gateway.config.store_url)
        await store.open(migrate=False)
        try:
            await store.steps.update(step.run_id, step.position, **values)
        finally:
            await store.close()

    asyncio.run(write())


def unique_and_paired(body: dict[str, Any]) -> None:
    calls, outputs = call_ids(body)
    assert len(set(calls)) == len(calls), f"call ids repeat in the conversation: {calls}"
    assert sorted(outputs) == sorted(calls), f"outputs {outputs} do not pair with calls {calls}"


# ---------------------------------------------------------------------- item 2: call identity


# Two calls with the same id, VIP then NORMAL: in two turns, or in one.
REUSED_ID = {
    "later-turn": [
        call("test__record", VIP, call_id="call_0"),
        call("test__record", NORMAL, call_id="call_0"),
    ],
    "same-turn": [
        turn(
            call("test__record", VIP, call_id="call_0"),
            call("test__record", NORMAL, call_id="call_0"),
        )
    ],
}


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("where", REUSED_ID)
def test_a_call_reusing_an_approved_call_id_waits_for_its_own_approval(
    tmp_path: Path, model: ScriptedModel, store_url: str, api: str, where: str
) -> None:
    model.script(*REUSED_ID[where])
    with gateway(tmp_path, model, WITH_APPROVAL, api=api, store=store_url) as gw:
        gw.post_order("e1", name="#1")
        _, steps = next_stop(gw, set())
        [first] = waiting(steps)
        assert approve(gw, first).status_code == 200

        run, steps = next_stop(gw, {first.id})
        assert run.status == "awaiting_approval"
        [second] = waiting(steps)
        assert [c["label"] for c in CALLS] == ["vip"]
        assert second.arguments == NORMAL
        assert second.idempotency_key != first.idempotency_key


@pytest.mark.parametrize("api", APIS)
def test_calls_with_reused_ids_each_run_with_their_own_arguments_under_their_own_key(
    tmp_path: Path, model: ScriptedModel, store_url: str, api: str
) -> None:
    model.script(
        turn(
            call("test__record", VIP, call_id="call_0"),
            call("test__record", NORMAL, call_id="call_0"),
        ),
        call("test__record", REFUND, call_id="call_0"),
        answer("All recorded."),
    )
    with gateway(tmp_path, model, WITH_APPROVAL, api=api, store=store_url) as gw:
        gw.post_order("e1", name="#1")
        seen: set[int] = set()
        run, steps = next_stop(gw, seen)
        while run.status == "awaiting_approval":
            [step] = [s for s in waiting(steps) if s.id not in seen]
            assert approve(gw, step).status_code == 200
            seen.add(step.id)
            run, steps = next_stop(gw, seen)

    assert run.status == "succeeded"
    ran = [(c["label"], c["key"]) for c in CALLS]
    journal = [(s.arguments["label"], s.idempotency_key) for s in tool_steps(steps)]
    assert ran == journal
    assert [label for label, _ in ran] == ["vip", "normal", "refund"]
    assert len({key for _, key in ran}) == 3
    assert all(s.decision == "approved" for s in tool_steps(steps))


@pytest.mark.parametrize("api", APIS)
def test_reused_call_ids_go_back_to_the_model_renamed_and_paired_with_their_outputs(
    tmp_path: Path, model: ScriptedModel, api: str
) -> None:
    model.script(
        turn(
            call("test__record", VIP, call_id="call_0"),
            call("test__record", NORMAL, call_id="call_0"),
        ),
        call("test__record", REFUND, call_id="call_0", expect=unique_and_paired),
        answer("All recorded.", expect=unique_and_paired),
    )
    with gateway(tmp_path, model, WITHOUT_APPROVAL, api=api) as gw:
        gw.post_order("e1", name="#1")
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    assert run.status == "succeeded"
    turns = [s.result["calls"] for s in steps if s.kind == "model" and s.result["calls"]]
    model_ids = [[c.get("model_call_id", c["call_id"]) for c in calls] for calls in turns]
    assert model_ids == [["call_0", "call_0"], ["call_0"]]
    ids = [c["call_id"] for calls in turns for c in calls]
    assert len(set(ids)) == 3
    assert [s.call_id for s in tool_steps(steps)] == ids


def test_a_journal_step_that_is_not_the_call_at_its_position_stops_the_run(
    tmp_path: Path, model: ScriptedModel
) -> None:
    with waiting_call(tmp_path, model, call("test__record", VIP)) as (gw, run, step):
        set_step(gw, step, call_id="call_from_elsewhere")
        assert approve(gw, step).status_code == 200
        [run] = gw.finished_runs(1)

    assert run.status == "failed"
    assert run.error is not None and "journal" in run.error
    assert CALLS == []


# ---------------------------------------------------------------------- item 2: approval digests


def test_an_approval_naming_other_arguments_is_refused_alike_by_api_dashboard_and_cli(
    tmp_path: Path, model: ScriptedModel
) -> None:
    with waiting_call(tmp_path, model, call("test__record", VIP)) as (gw, run, step):
        api = approve(gw, step, digest=other_digest())
        with Dashboard(gw) as dashboard:
            page = dashboard.approve(step, run.event_id, other_digest())
        command = cli_approve(tmp_path, step, "--digest", other_digest())
        still = waiting(gw.steps(run.id))

    assert api.status_code == 409, api.text
    assert "not the arguments" in api.json()["detail"]
    assert "problem=" in page.headers["location"]
    assert command.exit_code == 1, command.output
    assert [s.id for s in still] == [step.id]
    assert CALLS == []


def test_the_dashboard_does_not_approve_without_the_digest_it_showed(
    tmp_path: Path, model: ScriptedModel
) -> None:
    with waiting_call(tmp_path, model, call("test__record", VIP)) as (gw, run, step):
        with Dashboard(gw) as dashboard:
            page = dashboard.approve(step, run.event_id, None)
        still = waiting(gw.steps(run.id))

    assert "problem=" in page.headers["location"], page.headers["location"]
    assert [s.id for s in still] == [step.id]
    assert CALLS == []


def test_a_step_changed_after_the_approver_saw_it_cannot_be_approved(
    tmp_path: Path, model: ScriptedModel, store_url: str
) -> None:
    script = call("test__record", VIP)
    with waiting_call(tmp_path, model, script, store=store_url) as (gw, run, step):
        seen = view(gw, step).get("arguments_digest")
        set_step(gw, step, arguments=NORMAL)
        with_digest = approve(gw, step, digest=seen)
        without_digest = gw.client.post(f"/api/steps/{step.id}/approve", headers=AUTH)
        still = waiting(gw.steps(run.id))

    assert (with_digest.status_code, without_digest.status_code) == (409, 409)
    assert [s.id for s in still] == [step.id]
    assert CALLS == []


@pytest.mark.parametrize("api", APIS)
def test_a_resumed_run_never_makes_a_call_whose_arguments_differ_from_the_approved_ones(
    tmp_path: Path, model: ScriptedModel, store_url: str, api: str
) -> None:
    script = (call("test__record", VIP), answer("Understood."))
    with waiting_call(tmp_path, model, *script, api=api, store=store_url) as (gw, run, step):
        # The turn that proposed the call now says something else (a write to the store).
        [proposal] = [s for s in gw.steps(run.id) if s.kind == "model"]
        calls = [{**proposal.result["calls"][0], "arguments": json.dumps(NORMAL)}]
        set_step(gw, proposal, result={**proposal.result, "calls": calls})
        assert approve(gw, step).status_code == 200
        [run] = gw.finished_runs(1)
        [refused] = tool_steps(gw.steps(run.id))

    assert CALLS == []
    assert refused.status == "refused"
    assert refused.arguments == NORMAL  # the journal shows what was proposed, and not run
    assert refused.error is not None and "not the arguments approved" in refused.error


async def test_steps_waiting_before_the_upgrade_are_bound_to_their_arguments(
    store_url: str,
) -> None:
    from gateway.store.records import call_digest

    store = Store(store_url)
    try:
        await database.upgrade(store.write_engine, "0003")
        async with store.write_engine.begin() as conn:
            for statement in _old_waiting_run():
                await conn.execute(statement)
        await store.open()
        approved, awaiting = await store.steps.of_run(1)
    finally:
        await store.close()

    assert approved.approved_digest == call_digest("test.record", VIP)
    assert awaiting.arguments_digest == call_digest("test.record", NORMAL)
    assert awaiting.approved_digest is None


def _old_waiting_run() -> list[Any]:
    """Rows of the schema before 0005: a run with one call approved and not yet made, and one
    still waiting (only the columns that revision had)."""
    when = DateTime(timezone=True)
    now = datetime.now(UTC)
    events = table(
        "events",
        *(column(name) for name in ("id", "source", "provider", "type", "delivery_id")),
        column("received_at", when),
        column("headers", JSON),
        column("body", LargeBinary),
        column("status"),
    )
    runs = table(
        "runs",
        *(column(n) for n in ("id", "event_id", "rule", "kind", "status")),
        column("created_at", when),
    )
    steps = table(
        "steps",
        *(column(n) for n in ("run_id", "position", "kind", "tool", "idempotency_key", "status")),
        column("arguments", JSON),
        column("started_at", when),
    )
    event = {
        "id": 1,
        "source": "shop",
        "provider": "shopify",
        "type": "orders/create",
        "delivery_id": "d1",
        "received_at": now,
        "headers": {},
        "body": b"{}",
        "status": "routed",
    }
    run = {
        "id": 1,
        "event_id": 1,
        "rule": "triage",
        "kind": "assistant",
        "status": "awaiting_approval",
        "created_at": now,
    }
    calls = [
        {
            "run_id": 1,
            "position": position,
            "kind": "tool",
            "tool": "test.record",
            "idempotency_key": f"1.{position}.old",
            "status": status,
            "arguments": arguments,
            "started_at": now,
        }
        for position, status, arguments in ((2, "approved", VIP), (3, "awaiting_approval", NORMAL))
    ]
    return [insert(events).values(event), insert(runs).values(run), insert(steps).values(calls)]


# ---------------------------------------------------------------------- item 3: what is shown


def forward(url: str) -> dict[str, Any]:
    """http.request arguments carrying values a redactor would hide."""
    return {
        "method": "POST",
        "url": f"{url}/orders",
        "headers": {"X-Session-Token": "hdr-s3cr3t"},
        "json": {"session_token": "s3cr3t-value", "order": "#1"},
        "body": None,
    }


def test_the_api_shows_the_approver_the_exact_arguments_of_a_waiting_call(
    tmp_path: Path, model: ScriptedModel, service: tuple[str, list[dict[str, Any]]]
) -> None:
    url, _ = service
    script = call("http__request", forward(url))
    with waiting_call(tmp_path, model, script, rules=FORWARD_RULE) as (gw, _, step):
        shown = view(gw, step)

    assert shown["arguments"] == forward(url)
    assert shown["arguments_digest"] == step.arguments_digest


def test_the_dashboard_shows_the_approver_the_exact_arguments_and_sends_their_digest(
    tmp_path: Path, model: ScriptedModel, service: tuple[str, list[dict[str, Any]]]
) -> None:
    url, _ = service
    script = call("http__request", forward(url))
    with (
        waiting_call(tmp_path, model, script, rules=FORWARD_RULE) as (gw, run, step),
        Dashboard(gw) as dashboard,
    ):
        page = dashboard.event_page(run.event_id)

    shown = page.split(f'id="step-{step.id}"')[1].split("</li>")[0]
    assert "s3cr3t-value" in shown
    assert "hdr-s3cr3t" in shown
    assert "[redacted]" not in shown
    assert f'name="digest" value="{step.arguments_digest}"' in shown


def test_the_cli_shows_the_exact_arguments_and_asks_before_approving(
    tmp_path: Path, model: ScriptedModel, service: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = service
    script = (call("http__request", forward(url)), answer("Forwarded."))
    with waiting_call(tmp_path, model, *script, rules=FORWARD_RULE) as (gw, run, step):
        declined = cli_approve(tmp_path, step, input="n\n")
        assert waiting(gw.steps(run.id)) == [step]
        accepted = cli_approve(tmp_path, step, input="y\n")
        [run] = gw.finished_runs(1)

    assert declined.exit_code == 1
    assert "s3cr3t-value" in declined.output
    assert "hdr-s3cr3t" in declined.output
    assert step.arguments_digest is not None and step.arguments_digest in declined.output
    assert accepted.exit_code == 0, accepted.output
    assert run.status == "succeeded"
    [sent] = received
    assert sent["json"] == {"session_token": "s3cr3t-value", "order": "#1"}


def test_the_arguments_of_a_decided_call_are_redacted_again(
    tmp_path: Path, model: ScriptedModel, service: tuple[str, list[dict[str, Any]]]
) -> None:
    url, _ = service
    script = (call("http__request", forward(url)), answer("Not forwarded."))
    with waiting_call(tmp_path, model, *script, rules=FORWARD_RULE) as (gw, _, step):
        rejected = gw.client.post(
            f"/api/steps/{step.id}/reject", headers=AUTH, json={"reason": "no"}
        )
        assert rejected.status_code == 200
        gw.finished_runs(1)
        shown = view(gw, step)

    assert shown["status"] == "rejected"
    assert shown["arguments"]["json"]["session_token"] == "[redacted]"
