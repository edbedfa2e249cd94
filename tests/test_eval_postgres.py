"""`gateway eval` on PostgreSQL: the live store and the eval store each a PostgreSQL database;
the eval replays, is kept, listed and deleted there, and the live store is left as it was.
Skipped with the reason without a PostgreSQL server, except in CI (CI=true)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app
from gateway.testing.fake_jira import FakeJira
from gateway.testing.server import serve_in_thread
from gateway.testing.smtp import SmtpServer
from tests.fixtures import requires_fixtures
from tests.live import live_gateway
from tests.postgres import fresh_database_sync
from tests.test_eval import CANDIDATE, LIVE, eval_cli

pytestmark = requires_fixtures


def test_eval_on_postgresql_keeps_lists_and_deletes_evals(tmp_path: Path) -> None:
    fake = FakeJira(projects=("OPS",))
    prices = ["50.00", "500.00", "950.00", "500.00"]
    with (
        fresh_database_sync() as live_url,
        fresh_database_sync() as eval_url,
        serve_in_thread(fake) as url,
        SmtpServer() as smtp,
    ):
        handlers = {"jira": {"server": url, "user": "u", "password": "p"}, "email": smtp.settings()}
        with live_gateway(
            tmp_path, LIVE, handlers=handlers, store=live_url, eval={"store": eval_url}
        ) as gw:
            for i, price in enumerate(prices, start=1):
                gw.post_order(f"e{i}", name=f"#{i}", total_price=price)
            live_runs = gw.finished_runs(4)
            issues = len(fake.issues)

            code, output, report = eval_cli(
                tmp_path, CANDIDATE, "--events", "source=shop payload.total_price=500.00"
            )
            every, said, whole = eval_cli(tmp_path, CANDIDATE, "--last", "4")

            assert gw.runs() == live_runs
            assert len(fake.issues) == issues
        config = str(tmp_path / "gateway.yaml")
        runner = CliRunner()
        listed = runner.invoke(app, ["evals", "--config", config, "--json"])
        deleted = runner.invoke(app, ["evals", "--config", config, "--delete", "1"])
        left = runner.invoke(app, ["evals", "--config", config, "--json"])

    assert code == 0, output
    assert [e["event_id"] for e in report["events"]] == [2, 4]  # type: ignore[attr-defined]
    assert not any(e["changed"] for e in report["events"])  # type: ignore[attr-defined]
    assert every == 0, said
    assert whole["totals"]["changed"] == 2  # type: ignore[index]
    assert [(r["id"], r["events"]) for r in json.loads(listed.output)] == [(2, 4), (1, 2)]
    assert deleted.exit_code == 0, deleted.output
    assert [r["id"] for r in json.loads(left.output)] == [2]
