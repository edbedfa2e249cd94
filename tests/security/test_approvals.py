"""Approvals bind to the exact call: a reused tool-call id never runs unapproved arguments.

A model (through the real `openai` client, against the scripted model on loopback, over the
Responses API and Chat Completions) proposes calls; an operator decides through the API, the
dashboard or the CLI; the store is SQLite or PostgreSQL. What ran is compared with what was
approved and with what the journal says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gateway.store import Run, Step, Store
from gateway.testing.fake_llm import ScriptedModel, answer, call, call_ids, turn
from gateway.testing.fake_llm import Step as ScriptedStep
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


def set_step(gw: LiveGateway, step: Step, **values: Any) -> None:
    """Write to a stored step directly, as anyone with write access to the database can."""

    async def write() -> None:
        store = Store(gw.app.state.config.store_url)
        await store.open(migrate=False)
        try:
            await store.update_step(step.run_id, step.position, **values)
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
