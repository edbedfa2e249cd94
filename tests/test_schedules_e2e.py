"""The example scheduled rules (rules/reports.yaml) through the CLI and a live gateway.

`gateway schedules` shows when they fire, `gateway check` refuses a schedule that cannot run,
and `gateway fire` makes the dead-runs digest email last week's dead runs.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from sqlalchemy import update
from typer.testing import CliRunner

from gateway import cli
from gateway.scheduler import periods
from gateway.store import NewEvent, NewRun, Store
from gateway.store.schema import runs as runs_table
from gateway.testing.smtp import SmtpServer
from tests.live import live_gateway

REPORTS = Path(__file__).parent.parent / "rules" / "reports.yaml"
runner = CliRunner()


def write_config(tmp_path: Path, rules: Path) -> Path:
    path = tmp_path / "gateway.yaml"
    document = {
        "store": f"sqlite:///{tmp_path / 'gateway.db'}",
        "rules": str(rules),
        # rules/reports.yaml has an assistant rule: its profile must exist, as for `check`.
        "models": {"default": {"api": "responses", "model": "gpt-4.1-mini"}},
    }
    path.write_text(yaml.safe_dump(document))
    return path


def schedules(config: Path, now: str) -> dict[str, Any]:
    result = runner.invoke(cli.app, ["schedules", "--json", "--now", now, "--config", str(config)])
    assert result.exit_code == 0, result.output
    return {row["rule"]: row for row in json.loads(result.stdout)}


def test_schedules_lists_both_example_rules_with_next_fire_in_paris_and_utc(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, REPORTS.parent)

    listed = schedules(config, "2026-01-14T12:00:00+00:00")  # a Wednesday, in winter

    report = listed["weekly-sales-report"]
    assert (report["cron"], report["timezone"]) == ("0 8 * * MON", "Europe/Paris")
    assert report["next"][0] == {
        "local": "2026-01-19T08:00:00+01:00",
        "utc": "2026-01-19T07:00:00+00:00",
    }
    assert report["next"][1]["utc"] == "2026-01-26T07:00:00+00:00"
    assert listed["weekly-dead-runs-digest"]["next"][0] == {
        "local": "2026-01-19T07:00:00+01:00",
        "utc": "2026-01-19T06:00:00+00:00",
    }
    assert report["last_fire_at"] is None and report["last_result"] is None


def test_in_summer_the_paris_monday_8am_is_6am_utc(tmp_path: Path) -> None:
    config = write_config(tmp_path, REPORTS.parent)

    listed = schedules(config, "2026-07-01T00:00:00Z")

    assert listed["weekly-sales-report"]["next"][0] == {
        "local": "2026-07-06T08:00:00+02:00",
        "utc": "2026-07-06T06:00:00+00:00",
    }


def test_the_table_form_names_each_rule(tmp_path: Path) -> None:
    config = write_config(tmp_path, REPORTS.parent)

    result = runner.invoke(cli.app, ["schedules", "--config", str(config)])

    assert result.exit_code == 0, result.output
    assert "weekly-sales-report" in result.output
    assert "weekly-dead-runs-digest" in result.output


@pytest.mark.parametrize(
    ("schedule", "where", "message"),
    [
        ('{cron: "0 25 * * MON"}', ":5: rule broken: schedule.cron:", "maximum value"),
        ("{cron: '* * *'}", ":5: rule broken: schedule.cron:", "Wrong number of fields"),
        ("{every: 5 fortnights}", ":5: rule broken: schedule.every:", "not an interval"),
        (
            "{cron: '0 8 * * *', timezone: Europe/Atlantis}",
            ":5: rule broken: schedule.timezone:",
            "unknown zone 'Europe/Atlantis'",
        ),
    ],
)
def test_check_refuses_a_schedule_that_cannot_run_naming_file_line_and_rule(
    tmp_path: Path, schedule: str, where: str, message: str
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text(
        "- name: fine\n  schedule: {every: 1h}\n  actions: [{log.record: {message: hi}}]\n"
        f"- name: broken\n  schedule: {schedule}\n  actions: [{{log.record: {{message: hi}}}}]\n"
    )
    config = write_config(tmp_path, rules)

    result = runner.invoke(cli.app, ["check", "--config", str(config)])

    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert f"bad.yaml{where}" in output
    assert message in output
    assert "rule fine" not in output


def test_fire_refuses_a_rule_that_is_not_scheduled(tmp_path: Path) -> None:
    config = write_config(tmp_path, REPORTS.parent)

    result = runner.invoke(cli.app, ["fire", "no-such-rule", "--config", str(config)])

    assert result.exit_code == 1
    assert "no enabled scheduled rule named 'no-such-rule'" in " ".join(result.output.split())


# ------------------------------------------------------------------ the dead-runs digest


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def seed_runs(database: Path) -> dict[str, int]:
    """Runs the digest must tell apart: dead last week (listed), dead this week and failed
    last week (not listed). Written before the gateway starts, created_at set by hand."""
    now = datetime.now(UTC)
    last_week = periods(now, "Europe/Paris")["last_week"]
    middle = datetime.fromisoformat(last_week["start_utc"]) + timedelta(days=3, hours=5)

    async def seed() -> dict[str, int]:
        store = Store(f"sqlite:///{database}")
        await store.open(migrate=True)
        try:
            stored = await store.events.add(
                NewEvent(
                    source="shop",
                    provider="shopify",
                    type="orders/create",
                    delivery_id="seeded-1",
                    headers={},
                    body=orjson.dumps({"id": 1}),
                    received_at=middle,
                )
            )
            seeded = {
                "dead_last_week": ("sync-orders", "dead", "gave up after 5 attempts: 503 upstream"),
                "dead_this_week": ("sync-orders", "dead", "gave up: this week"),
                "failed_last_week": ("sync-orders", "failed", "jira.create_issue: bad project"),
            }
            ids = await store.runs.route(
                stored.id,
                [
                    NewRun(event_id=stored.id, rule=rule, kind="actions", status=s, error=e)
                    for rule, s, e in seeded.values()
                ],
                "routed",
            )
            created = {"dead_last_week": middle, "dead_this_week": now, "failed_last_week": middle}
            async with store.write_engine.begin() as conn:
                for name, run_id in zip(seeded, ids, strict=True):
                    await conn.execute(
                        update(runs_table)
                        .where(runs_table.c.id == run_id)
                        .values(created_at=created[name], finished_at=created[name])
                    )
            return dict(zip(seeded, ids, strict=True))
        finally:
            await store.close()

    return asyncio.run(seed())


def test_fired_digest_emails_last_weeks_dead_runs(tmp_path: Path, smtp: SmtpServer) -> None:
    seeded = seed_runs(tmp_path / "gateway.db")

    with live_gateway(
        tmp_path,
        REPORTS.read_text(),
        handlers={"email": smtp.settings()},
        # The sales report's assistant needs a profile to load; this test never calls it.
        models={"default": {"api": "responses", "model": "gpt-4.1-mini"}},
    ) as gw:
        fired = runner.invoke(
            cli.app,
            ["fire", "weekly-dead-runs-digest", "--config", str(tmp_path / "gateway.yaml")],
        )
        assert fired.exit_code == 0, fired.output
        match = re.search(r"event (\d+)", fired.output)
        assert match is not None, fired.output
        event_id = int(match.group(1))

        [run] = gw.wait_for(
            lambda: [
                r
                for r in gw.runs(rule="weekly-dead-runs-digest")
                if r.status in ("succeeded", "failed", "dead")
            ]
        )
        assert run.status == "succeeded", run.error
        assert run.event_id == event_id
        event = gw.event(event_id)
        assert (event.source, event.type) == ("schedule", "weekly-dead-runs-digest")
        assert "manual" in event.delivery_id

    [message] = smtp.messages
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    week = periods(datetime.now(UTC), "Europe/Paris")["last_week"]
    assert message["To"] == "ops@example.com"
    assert message["Subject"] == (f"Gateway: 1 dead run(s) in the week of {week['start_date']}")
    assert f"run {seeded['dead_last_week']} of rule sync-orders" in text
    assert "gave up after 5 attempts: 503 upstream" in text
    assert f"run {seeded['dead_this_week']} " not in text
    assert f"run {seeded['failed_last_week']} " not in text
    assert f"from {week['start_date']} to {week['last_date']} (Europe/Paris)" in text
