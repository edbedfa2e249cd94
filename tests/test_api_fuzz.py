"""Schemathesis against the admin API's own OpenAPI document: no input makes it answer 5xx.

Runs on a live gateway holding an event and a dead run (approve/reject answer 409 or 404).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.api.openapi import document
from gateway.tools import ToolError
from tests.fixtures import requires_fixtures
from tests.live import LiveGateway, live_gateway
from tests.recording import FAILURES, reset

if os.environ.get("CI"):  # CI must run this test: a missing package is a failure there
    import hypothesis
    import schemathesis
else:
    schemathesis = pytest.importorskip("schemathesis")
    hypothesis = pytest.importorskip("hypothesis")

pytestmark = [requires_fixtures]

TOKEN = "fuzz-admin-token"
RULES = """
- name: record
  on: {source: shop, event: orders/create}
  actions:
    - test.record: {label: "{{ payload.note }}"}
- name: skipped
  on: {source: shop, event: orders/create}
  when: "{{ payload.note == 'never' }}"
  actions:
    - test.record: {label: "{{ payload.missing.deeper }}"}
"""

schema = schemathesis.openapi.from_dict(document())
# Every answer against the document: status code documented, JSON as declared, body valid
# against its schema; and no operation served without the token or under another method.
# (Not `negative_data_rejection`: the API reads an empty parameter as absent and dates as
# `datetime.fromisoformat` does, more leniently than the schema's `date-time`.)
RESPONSE_CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.ignored_auth,
    schemathesis.checks.unsupported_method,
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    reset()
    tmp_path: Path = tmp_path_factory.mktemp("fuzz")
    with live_gateway(tmp_path, RULES, admin_token=TOKEN, worker={"max_attempts": 1}) as gw:
        FAILURES["dead"].append(ToolError("down"))
        gw.post_order("e1", name="#1", note="dead")
        gw.wait_for(lambda: gw.runs(status="dead"))
        yield gw
    reset()


@schema.parametrize()
@hypothesis.settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_no_input_makes_the_api_answer_5xx(case: Any, live: LiveGateway) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = case.call(base_url=f"{live.url}/api", headers=headers)
    assert response.status_code < 500, (case.path, case.method, response.text[:500])
    assert response.headers["content-type"][0].startswith("application/json")
    case.validate_response(response, headers=headers, checks=RESPONSE_CHECKS)
