"""`gateway eval` at its edges: the bounds of its options, the candidate rules' problems, and
a rule file's own tests (fixtures), on new, empty gateway stores."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from gateway.cli import app
from gateway.cli.evaluate import parse_since
from gateway.store import NewEvent, NewRun, Run, Step, Store
from tests.fixtures import shopify_order
from tests.test_eval import LIVE_ISSUE

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def eval_empty(write_config: Callable[..., Path], candidate: str, *args: str) -> Result:
    """`gateway eval` over a new, empty gateway store."""
    path = write_config()
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "--config", str(path)]).exit_code == 0
    folder = path.parent / "candidate"
    folder.mkdir(exist_ok=True)
    (folder / "rules.yaml").write_text(candidate)
    return runner.invoke(app, ["eval", "--config", str(path), "--rules", str(folder), *args])


@pytest.mark.parametrize(("last", "code"), [("0", 2), ("1", 0), ("1000", 0), ("1001", 2)])
def test_last_is_at_most_a_thousand_events(
    write_config: Callable[..., Path], last: str, code: int
) -> None:
    result = eval_empty(write_config, LIVE_ISSUE, "--last", last)
    assert result.exit_code == code, result.output
    if code == 0:
        assert "0 event(s), 0 changed" in result.output


def test_the_eval_store_is_never_the_gateways_own(write_config: Callable[..., Path]) -> None:
    store = f"sqlite:///{write_config().parent / 'gateway.db'}"
    result = eval_empty(write_config, LIVE_ISSUE, "--store", store)
    assert result.exit_code == 1
    assert "must not be the gateway's store" in result.output


def test_a_candidate_rule_with_a_problem_is_named_and_nothing_runs(
    write_config: Callable[..., Path],
) -> None:
    broken = LIVE_ISSUE + "  expect: {answer_matches: '(unclosed'}\n"
    result = eval_empty(write_config, broken, "--last", "5")
    assert result.exit_code == 1
    assert "in the candidate rules" in result.output
    assert "not a regular expression" in result.output
    assert not (write_config().parent / "eval.db").exists()


def test_since_takes_a_duration_ago_or_a_time() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2026-11-01T00:00") == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(typer.BadParameter):
        parse_since("last week")


WITH_TESTS = """
- name: big-orders
  on: {source: shop, event: orders/create}
  when: "{{ payload.total_price | float > 100 }}"
  actions:
    - jira.create_issue: {project: OPS, summary: "Order {{ payload.name }}"}
  tests:
    - event: fixtures/big.json
      expect: {calls: [{tool: jira.create_issue, args: {project: OPS, summary: "Order #9"}}]}
    - event: fixtures/small.json
      expect: {no_calls: [email.send]}
"""


def order_fixture(folder: Path, name: str, price: str) -> None:
    (folder / "fixtures").mkdir(parents=True, exist_ok=True)
    event = {
        "source": "shop",
        "type": "orders/create",
        "payload": {"name": "#9", "total_price": price},
    }
    (folder / "fixtures" / f"{name}.json").write_text(json.dumps(event))


def test_a_rule_files_own_tests_run_and_a_failing_one_is_named(
    write_config: Callable[..., Path],
) -> None:
    candidate = write_config().parent / "candidate"
    order_fixture(candidate, "big", "500.00")
    order_fixture(candidate, "small", "5.00")

    result = eval_empty(write_config, WITH_TESTS, "--last", "1")

    assert result.exit_code == 1, result.output
    assert "FAIL fixture fixtures/small.json rule big-orders: run" in result.output
    assert "big.json" not in result.output  # it passed
    assert "expectations: 50% of 2 passed" in result.output


def test_a_missing_fixture_file_is_named_before_anything_runs(
    write_config: Callable[..., Path],
) -> None:
    result = eval_empty(write_config, WITH_TESTS, "--last", "1")

    assert result.exit_code == 1
    assert "rule big-orders: tests.0: fixtures/big.json" in result.output
    assert not (write_config().parent / "eval.db").exists()


def test_runs_an_earlier_eval_left_open_are_cancelled_not_carried_on(
    write_config: Callable[..., Path],
) -> None:
    eval_db = write_config().parent / "eval.db"

    async def leave_a_pending_run() -> int:
        store = Store(f"sqlite:///{eval_db}")
        await store.open(migrate=True)
        try:
            body, headers = shopify_order("earlier")
            new = NewEvent("shop", "shopify", "orders/create", "earlier", headers, body, NOW)
            event = await store.events.add(new)
            kept = NewRun(event_id=event.id, rule="file-order", kind="actions", mode="shadow")
            (run_id,) = await store.runs.route(event.id, [kept], "routed")
            return run_id
        finally:
            await store.close()

    async def read(run_id: int) -> tuple[Run | None, list[Step]]:
        store = Store(f"sqlite:///{eval_db}")
        await store.open()
        try:
            return await store.runs.get(run_id), await store.steps.of_run(run_id)
        finally:
            await store.close()

    run_id = asyncio.run(leave_a_pending_run())
    result = eval_empty(write_config, LIVE_ISSUE, "--last", "1")

    assert result.exit_code == 0, result.output
    run, steps = asyncio.run(read(run_id))
    assert run is not None and run.status == "cancelled"
    assert run.error == "left open by an earlier eval"
    assert steps == []
