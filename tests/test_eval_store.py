"""The eval store's parts on every backend: evals kept, listed within their bound, deleted
with what they copied; MCP tool lists kept; the payload scan of `--events` within its bound;
and an eval's report redacted as the dashboard and the API show it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.evaluation import selection as selecting
from gateway.evaluation import stored
from gateway.evaluation.report import ArgumentChange, EvalReport, ProposedCall
from gateway.evaluation.selection import Selection, select_events
from gateway.redaction import REDACTED, Redactor
from gateway.store import NewEvent, NewRun, Store, database
from gateway.store.records import EvalSummary
from tests.test_cli_store import revision

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def summary(events: int = 1) -> EvalSummary:
    return EvalSummary(0, NOW, "/rules-next", events, 0, 0.0, 0.0, 0.0, 0, 0)


def order(number: int, price: str) -> NewEvent:
    body = json.dumps({"name": f"#{number}", "total_price": price}).encode()
    return NewEvent("shop", "shopify", "orders/create", f"d{number}", {}, body, NOW)


async def test_deleting_an_eval_forgets_its_events_runs_and_steps_only(store: Store) -> None:
    kept = (await store.events.add(order(1, "5"))).id
    copied = (await store.events.add(order(2, "5"))).id
    for event_id in (kept, copied):
        new = NewRun(event_id=event_id, rule="r", kind="actions", mode="shadow")
        await store.runs.route(event_id, [new], "routed")
    eval_id = await store.evals.add(summary(), [copied], {"events": []})

    assert (await store.evals.get(eval_id)).event_ids == [copied]  # type: ignore[union-attr]
    assert await store.evals.delete(eval_id)
    assert not await store.evals.delete(eval_id)
    assert [e.id for e in await store.events.find()] == [kept]
    assert [r.event_id for r in await store.runs.find()] == [kept]
    assert await store.evals.latest(10) == []


async def test_a_kept_mcp_tool_list_replaces_the_last(store: Store) -> None:
    assert await store.evals.listing("gh") is None
    await store.evals.keep_listing("gh", {"lookup": {"name": "lookup"}})
    await store.evals.keep_listing("gh", {"add": {"name": "add"}})
    assert await store.evals.listing("gh") == {"add": {"name": "add"}}


async def test_evals_are_listed_newest_first_two_hundred_at_most(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'eval.db'}"
    assert await stored.listed(url) == []
    assert not (tmp_path / "eval.db").exists()  # reading made no store
    made = Store(url)
    await made.open()
    try:
        for number in range(stored.MAX_LISTED + 1):
            await made.evals.add(summary(number), [], {})
    finally:
        await made.close()

    found = await stored.listed(url, limit=10_000)

    assert len(found) == stored.MAX_LISTED
    assert found[0].events == stored.MAX_LISTED and found[-1].events == 1


async def test_an_eval_store_kept_by_an_older_gateway_is_brought_up_to_date(
    tmp_path: Path,
) -> None:
    eval_db = tmp_path / "eval.db"
    engine, _ = database.connect(f"sqlite:///{eval_db}")
    try:
        await database.upgrade(engine, "0010")  # before evals were kept
    finally:
        await engine.dispose()

    assert await stored.listed(f"sqlite:///{eval_db}") == []
    assert revision(eval_db) == database.head_revision()


@pytest.fixture
async def orders(tmp_path: Path) -> AsyncIterator[Store]:
    """Five orders, the 1st and the 3rd at 500.00."""
    opened = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
    await opened.open()
    for number, price in enumerate(["500.00", "10.00", "500.00", "10.00", "10.00"], start=1):
        await opened.events.add(order(number, price))
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_payload_match_reads_at_most_max_scanned_events(
    orders: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = Selection(payload={"total_price": "500.00"})
    assert [e.id for e in await select_events(orders, wanted)] == [1, 3]
    monkeypatch.setattr(selecting, "PAGE", 2)
    monkeypatch.setattr(selecting, "MAX_SCANNED", 3)  # the newest three: 5, 4, 3
    assert [e.id for e in await select_events(orders, wanted)] == [3]
    assert [e.id for e in await select_events(orders, replace(wanted, last=1))] == [3]


def test_a_report_is_shown_with_secret_looking_arguments_redacted() -> None:
    def call(token: str) -> ProposedCall:
        arguments = {"url": "https://x", "api_token": token}
        return ProposedCall(rule="r", tool="http.request", arguments=arguments, status="shadowed")

    report = EvalReport.model_validate(
        {
            "events": [
                {
                    "event_id": 1,
                    "source": "shop",
                    "type": "orders/create",
                    "live": {**SIDE, "calls": [call("old-secret").model_dump()]},
                    "candidate": {**SIDE, "calls": [call("new-secret").model_dump()]},
                    "changed": True,
                    "diff": ["-old-secret", "+new-secret"],
                    "changes": [
                        ArgumentChange(
                            tool="http.request",
                            argument="api_token",
                            live="old-secret",
                            candidate="new-secret",
                        ).model_dump()
                    ],
                }
            ],
            "failures": [],
            "totals": TOTALS,
        }
    )

    shown = report.redacted(Redactor()).model_dump_json()

    assert "secret" not in shown
    assert REDACTED in shown
    assert "old-secret" in report.model_dump_json()  # the kept report is unchanged


SIDE = {
    "runs": {},
    "refusals": 0,
    "approvals": 0,
    "input_tokens": 0,
    "output_tokens": 0,
    "cost": 0.0,
    "latency_ms": 0.0,
}
TOTALS = {
    "events": 1,
    "changed": 1,
    "cost_live": 0.0,
    "cost_candidate": 0.0,
    "latency_delta_ms": 0.0,
    "expectations": 0,
    "expectations_failed": 0,
    "pass_rate": None,
}
