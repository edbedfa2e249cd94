"""Statuses are defined once (gateway.store.status); what must spell them again agrees with it."""

from __future__ import annotations

import importlib
import json
from typing import get_args

import orjson

from gateway.store.schema import UNFINISHED
from gateway.store.status import FINISHED, RunStatus

MIGRATION_0003 = "gateway.store.migrations.versions.0003_unfinished_runs_by_key"


def test_unfinished_condition_is_the_text_of_the_partial_index_migration_0003_made() -> None:
    # The planners use a partial index only for a query that repeats its condition exactly.
    frozen = importlib.import_module(MIGRATION_0003).UNFINISHED
    assert UNFINISHED.text == frozen.text
    assert all(f"'{status}'" in UNFINISHED.text for status in FINISHED)


def test_gateway_runs_tool_offers_every_run_status() -> None:
    from handlers.gateway_runs import Status

    assert set(get_args(Status)) == {status.value for status in RunStatus}


def test_a_status_is_its_text_in_json_and_formatting() -> None:
    assert json.dumps({"status": RunStatus.DEAD}) == '{"status": "dead"}'
    assert orjson.loads(orjson.dumps({"status": RunStatus.DEAD})) == {"status": "dead"}
    assert f"{RunStatus.AWAITING_APPROVAL}" == str(RunStatus.AWAITING_APPROVAL)
    assert str(RunStatus.AWAITING_APPROVAL) == "awaiting_approval"
