"""The admin API on a live gateway: auth on every endpoint, the OpenAPI document, operations."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gateway.api import ENDPOINTS
from gateway.tools import ToolError
from tests.fixtures import requires_fixtures
from tests.live import LiveGateway, live_gateway
from tests.recording import CALLS, FAILURES

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]

TOKEN = "admin-token-for-tests"
RULES = """
- name: record-order
  on: {source: shop, event: orders/create}
  when: "{{ payload.note != 'skip' }}"
  actions:
    - test.record: {label: "{{ payload.name }}"}
- name: flaky
  on: {source: shop, event: orders/create}
  when: "{{ payload.note == 'flaky' }}"
  actions:
    - test.record: {label: flaky}
"""
# Every route, with a real id put in for `{id}` (see `_path`).
ROUTES = [(endpoint.method, endpoint.path) for endpoint in ENDPOINTS]


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[LiveGateway]:
    with live_gateway(tmp_path, RULES, admin_token=TOKEN, worker={"max_attempts": 1}) as gw:
        yield gw


def _path(path: str, ids: dict[str, int]) -> str:
    kind = path.split("/")[1]
    return "/api" + path.replace("{id:int}", str(ids.get(kind, 1)))


def _settled(gw: LiveGateway, name: str = "#1") -> dict[str, int]:
    gw.post_order("e1", name=name, note="")
    [run] = gw.finished_runs(1)
    [step] = gw.steps(run.id)
    return {"events": run.event_id, "runs": run.id, "steps": step.id}


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_endpoint_without_a_token_is_401(admin: LiveGateway, method: str, path: str) -> None:
    response = admin.client.request(method, _path(path, {}))
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "header",
    [
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {base64.b64encode(f'admin:{TOKEN}'.encode()).decode()}"},
        {"Authorization": TOKEN},
    ],
    ids=["wrong", "longer", "basic", "no-scheme"],
)
def test_every_endpoint_with_a_wrong_token_is_401(
    admin: LiveGateway, method: str, path: str, header: dict[str, str]
) -> None:
    response = admin.client.request(method, _path(path, {}), headers=header)
    assert response.status_code == 401


# What each endpoint answers with the right token, on a settled run whose step succeeded.
EXPECTED = {
    ("POST", "/runs/{id:int}/retry"): 409,  # only failed or dead runs are retried
    ("POST", "/steps/{id:int}/approve"): 409,  # the step is not awaiting approval
    ("POST", "/steps/{id:int}/reject"): 409,
    # No eval was kept here (tests/test_eval_ui.py reads and deletes one).
    ("GET", "/evals/{id:int}"): 404,
    ("DELETE", "/evals/{id:int}"): 404,
}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/rules/test"): {"source": "shop", "type": "orders/create", "payload": {}},
}


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_endpoint_with_the_right_token_works(
    admin: LiveGateway, method: str, path: str
) -> None:
    ids = _settled(admin)
    response = admin.client.request(
        method, _path(path, ids), headers=auth(), json=BODIES.get((method, path))
    )
    assert response.status_code == EXPECTED.get((method, path), 200), response.text
    assert response.headers["content-type"] == "application/json"
    response.json()


def test_without_an_admin_token_the_api_and_dashboard_are_off(tmp_path: Path) -> None:
    with live_gateway(tmp_path, RULES) as gw:
        for path in ("/api/events", "/api/openapi.json", "/ui/login", "/ui/events", "/ui/"):
            assert gw.client.get(path, headers=auth()).status_code == 404, path
        assert gw.client.post("/ui/login", data={"token": ""}).status_code == 404


def test_the_openapi_document_is_served_and_validates(admin: LiveGateway) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    served = admin.client.get("/api/openapi.json", headers=auth()).json()
    assert served["openapi"].startswith("3.1")
    validator.validate(served)
    documented = {
        (method.upper(), path)
        for path, operations in served["paths"].items()
        for method in operations
    }
    assert documented == {(m, p.replace("{id:int}", "{id}")) for m, p in ROUTES}


def test_unknown_ids_are_404_and_bad_input_is_422_never_500(admin: LiveGateway) -> None:
    client, headers = admin.client, auth()
    for path in ("/api/events/99", "/api/runs/99", "/api/events/99999999999999999999999"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    assert client.post("/api/steps/99/approve", headers=headers).status_code == 404
    assert client.post("/api/events/99/replay", headers=headers).status_code == 404
    for query in ("limit=0", "limit=x", "since=yesterday", "before=-1", "until=9999-99-99"):
        response = client.get(f"/api/events?{query}", headers=headers)
        assert response.status_code == 422, query
        assert response.json()["problems"]
    bad_bodies = [b"{", b"[]", b'"text"', b'{"source": 1}', b'{"event_id": "one"}']
    for body in bad_bodies:
        response = client.post("/api/rules/test", headers=headers, content=body)
        assert response.status_code == 422, body
    response = client.post("/api/steps/1/reject", headers=headers, content=b'{"reason": 5}')
    assert response.status_code in (404, 422)
    assert client.get("/api/nowhere", headers=headers).status_code == 404
    assert client.delete("/api/events", headers=headers).status_code == 405


def test_a_path_with_an_encoded_newline_is_still_answered_by_the_api(
    admin: LiveGateway,
) -> None:
    for path in ("/api/runs/%0A/retry", "/api/events/%0A1", "/api/%0A/events"):
        response = admin.client.post(path, headers=auth())
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/json", path
        assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("request_", "problems"),
    [
        (("GET", "/api/events?limit=0", None), ["limit: must be between 1 and 1000"]),
        (("GET", "/api/runs?event=x", None), ["event: not an integer: 'x'"]),
        (
            ("GET", "/api/events?since=yesterday", None),
            ["since: not a time: 'yesterday' (use 7d, 24h, 30m or an ISO 8601 date-time)"],
        ),
        (
            ("GET", "/api/events?source=" + "s" * 201, None),
            ["source: at most 200 characters, no NUL"],
        ),
        (
            ("POST", "/api/rules/test", {"event": {"type": ""}}),
            [
                "source: a non-empty string is required (or give event_id)",
                "type: a non-empty string is required (or give event_id)",
            ],
        ),
        (("POST", "/api/rules/test", {"event_id": "one"}), ["event_id: must be an integer"]),
        (
            ("POST", "/api/rules/test", {"source": "a", "type": "b", "headers": {"a": 1}}),
            ["headers: an object of strings"],
        ),
        (
            ("POST", "/api/steps/1/approve", {"by": "", "digest": "zz"}),
            [
                "by: a non-empty string of at most 200 characters",
                "digest: the step's arguments_digest, 64 hex digits",
            ],
        ),
        (("POST", "/api/steps/1/reject", {"reason": 5}), ["reason: must be a string"]),
    ],
)
def test_invalid_input_is_422_with_a_line_per_problem(
    admin: LiveGateway, request_: tuple[str, str, Any], problems: list[str]
) -> None:
    method, path, body = request_
    response = admin.client.request(method, path, headers=auth(), json=body)

    assert response.status_code == 422
    assert response.json() == {
        "error": "invalid_input",
        "detail": "; ".join(problems),
        "problems": problems,
    }


def test_events_filter_by_source_type_status_and_time_and_page_by_id(
    admin: LiveGateway,
) -> None:
    for i in range(5):
        admin.post_order(f"e{i}", name=f"#{i}", note="")
    admin.finished_runs(5)
    client, headers = admin.client, auth()

    page = client.get("/api/events?limit=2", headers=headers).json()
    assert [e["id"] for e in page["items"]] == [5, 4]
    following = client.get(f"/api/events?limit=2&before={page['next_before']}", headers=headers)
    assert [e["id"] for e in following.json()["items"]] == [3, 2]
    last = client.get("/api/events?limit=2&before=2", headers=headers).json()
    assert ([e["id"] for e in last["items"]], last["next_before"]) == ([1], None)

    def ids(query: str) -> list[int]:
        response = client.get(f"/api/events?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["items"]]

    assert ids("source=shop&type=orders/create&status=routed") == [5, 4, 3, 2, 1]
    assert ids("source=stripe") == []
    assert ids("type=orders/paid") == []
    assert ids("status=pending") == []
    assert ids("since=2000-01-01T00:00:00Z") == [5, 4, 3, 2, 1]
    assert ids("until=2000-01-01T00:00:00") == []
    assert ids("since=2999-01-01T00:00:00%2B02:00") == []


def test_event_detail_has_the_body_and_headers_with_secrets_redacted(tmp_path: Path) -> None:
    with live_gateway(tmp_path, RULES, admin_token=TOKEN, redact_fields=["EMAIL"]) as gw:
        ids = _settled(gw)
        detail = gw.client.get(f"/api/events/{ids['events']}", headers=auth()).json()
        run = gw.client.get(f"/api/runs/{ids['runs']}", headers=auth()).json()

    headers = {k.lower(): v for k, v in detail["headers"].items()}
    assert headers["x-shopify-hmac-sha256"] == "[redacted]"
    assert headers["x-shopify-topic"] == "orders/create"
    assert detail["body_encoding"] == "utf-8"
    assert detail["payload"]["name"] == "#1"
    assert detail["payload"]["email"] == "[redacted]"  # a configured sensitive field
    assert detail["body_redacted"] is True
    assert '"email": "[redacted]"' in detail["body"]
    assert [r["rule"] for r in detail["runs"]] == ["record-order"]
    assert [s["status"] for s in run["steps"]] == ["succeeded"]


def test_the_cli_json_and_the_api_show_the_same_shapes(admin: LiveGateway, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gateway import cli

    ids = _settled(admin)

    def printed(*args: str) -> Any:
        result = CliRunner().invoke(
            cli.app, [*args, "--json", "-c", str(tmp_path / "gateway.yaml")]
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def served(path: str) -> Any:
        return admin.client.get(f"/api{path}", headers=auth()).json()

    assert printed("events") == served("/events")["items"]
    assert printed("runs") == served("/runs")["items"]
    run, detail = printed("run", str(ids["runs"])), served(f"/runs/{ids['runs']}")
    assert run == detail
    assert all(step["finished_at"] for step in detail["steps"])


def test_replay_creates_new_runs_that_execute(admin: LiveGateway) -> None:
    ids = _settled(admin)
    response = admin.client.post(f"/api/events/{ids['events']}/replay", headers=auth())

    assert response.status_code == 200
    [new] = response.json()["runs"]
    admin.finished_runs(2)
    assert admin.client.get(f"/api/runs/{new}", headers=auth()).json()["status"] == "succeeded"
    assert [c["label"] for c in CALLS] == ["#1", "#1"]
    assert CALLS[0]["key"] != CALLS[1]["key"]


def test_retry_of_a_dead_run_runs_it_again(admin: LiveGateway) -> None:
    FAILURES["flaky"].append(ToolError("the remote is down"))
    admin.post_order("e1", name="#1", note="flaky")
    runs = admin.finished_runs(2)
    [dead] = [r for r in runs if r.rule == "flaky"]
    assert dead.status == "dead"
    listed = admin.client.get("/api/dead", headers=auth()).json()["items"]
    assert [r["id"] for r in listed] == [dead.id]

    response = admin.client.post(f"/api/runs/{dead.id}/retry", headers=auth())

    assert response.status_code == 200, response.text
    admin.wait_for(lambda: admin.runs(rule="flaky")[0].status == "succeeded")
    detail = admin.client.get(f"/api/runs/{dead.id}", headers=auth()).json()
    assert [s["status"] for s in detail["steps"]] == ["succeeded"]
    assert admin.client.get("/api/dead", headers=auth()).json()["items"] == []
    again = admin.client.post(f"/api/runs/{dead.id}/retry", headers=auth())
    assert again.status_code == 409


def test_rule_tester_shows_matches_and_rendered_actions_executing_nothing(
    admin: LiveGateway,
) -> None:
    body = {"source": "shop", "type": "orders/create", "payload": {"name": "#7", "note": "x"}}
    result = admin.client.post("/api/rules/test", headers=auth(), json=body).json()

    assert result["matched"] == ["record-order"]
    [record] = [r for r in result["rules"] if r["rule"] == "record-order"]
    assert record["actions"][0]["arguments"]["label"] == "#7"
    [flaky] = [r for r in result["rules"] if r["rule"] == "flaky"]
    assert flaky["reason"] == "`when` is false"
    nested = admin.client.post("/api/rules/test", headers=auth(), json={"event": body}).json()
    assert nested["matched"] == ["record-order"]
    assert CALLS == []
    assert admin.runs() == []

    ids = _settled(admin)
    stored = admin.client.post(
        "/api/rules/test", headers=auth(), json={"event_id": ids["events"]}
    ).json()
    assert stored["matched"] == ["record-order"]
    missing = admin.client.post("/api/rules/test", headers=auth(), json={"event_id": 999})
    assert missing.status_code == 404


def test_rules_reload_swaps_valid_rules_and_refuses_invalid_ones(
    admin: LiveGateway, tmp_path: Path
) -> None:
    rules_file = tmp_path / "rules" / "rules.yaml"
    rules_file.write_text(RULES + "- name: broken\n  on: {source: shop}\n  actions: []\n")
    refused = admin.client.post("/api/rules/reload", headers=auth())
    assert refused.status_code == 422
    assert any("broken" in p for p in refused.json()["problems"])
    names = [r["name"] for r in admin.client.get("/api/rules", headers=auth()).json()["items"]]
    assert names == ["record-order", "flaky"]

    rules_file.write_text(RULES.replace("record-order", "record-order-v2"))
    response = admin.client.post("/api/rules/reload", headers=auth())
    assert response.status_code == 200
    assert [r["name"] for r in response.json()["items"]] == ["record-order-v2", "flaky"]
    admin.post_order("e9", name="#9", note="")
    [run] = admin.finished_runs(1)
    assert run.rule == "record-order-v2"


def test_rules_reload_starts_and_stops_scheduled_rules_in_the_running_scheduler(
    admin: LiveGateway, tmp_path: Path
) -> None:
    rules_file = tmp_path / "rules" / "rules.yaml"
    tick = "- name: tick\n  schedule: {every: 1s}\n  actions:\n    - test.record: {label: tick}\n"
    rules_file.write_text(RULES + tick)
    assert admin.client.post("/api/rules/reload", headers=auth()).status_code == 200
    deadline = time.monotonic() + 15
    while sum(c["label"] == "tick" for c in CALLS) < 2:
        assert time.monotonic() < deadline, "the reloaded schedule never fired twice"
        time.sleep(0.05)

    rules_file.write_text(RULES)
    assert admin.client.post("/api/rules/reload", headers=auth()).status_code == 200
    time.sleep(0.5)  # a firing already stored may still be running
    ticks = sum(c["label"] == "tick" for c in CALLS)
    time.sleep(2.5)
    assert sum(c["label"] == "tick" for c in CALLS) == ticks, "a removed schedule fired"
    schedules = admin.client.get("/api/schedules", headers=auth()).json()["items"]
    assert schedules == []


def test_schedules_lists_scheduled_rules(tmp_path: Path) -> None:
    rules = RULES + "- name: nightly\n  schedule: {cron: '0 3 * * *'}\n  actions:\n"
    rules += "    - test.record: {label: nightly}\n"
    with live_gateway(tmp_path, rules, admin_token=TOKEN) as gw:
        items = gw.client.get("/api/schedules", headers=auth()).json()["items"]
    assert [s["rule"] for s in items] == ["nightly"]
    assert len(items[0]["next"]) == 5


def test_requests_with_the_token_in_the_query_or_a_cookie_are_refused(
    admin: LiveGateway,
) -> None:
    assert admin.client.get(f"/api/events?token={TOKEN}").status_code == 401
    client = httpx2.Client(base_url=admin.url, cookies={"gateway_session": TOKEN})
    with client:
        assert client.get("/api/events").status_code == 401


ASSISTANT = """
- name: triage
  on: {source: shop, event: orders/create}
  assistant:
    prompt: "New order {{ payload.name }}"
    tools: [test.record]
    policy:
      test.record: {label: [vip, normal], approve: true}
"""


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_pending_step_is_decided_through_the_api_and_the_run_completes(
    tmp_path: Path, decision: str
) -> None:
    from gateway.testing.fake_llm import ScriptedModel, answer, call

    with ScriptedModel() as model:
        model.script(
            call("test__record", {"label": "vip", "delay_ms": 0, "order": None}, usage=(50, 5)),
            answer("Done.", usage=(60, 2)),
        )
        models = {"default": {"api": "responses", "base_url": model.url, "model": "m"}}
        with live_gateway(tmp_path, ASSISTANT, admin_token=TOKEN, models=models) as gw:
            gw.post_order("e1", name="#1")
            [waiting] = gw.wait_for(lambda: gw.runs(status="awaiting_approval"))
            detail = gw.client.get(f"/api/runs/{waiting.id}", headers=auth()).json()
            [pending] = [s for s in detail["steps"] if s["status"] == "awaiting_approval"]
            assert pending["arguments"]["label"] == "vip"
            [turn] = [s for s in detail["steps"] if s["kind"] == "model"]
            assert turn["tokens"] == {"input": 50, "output": 5}

            response = gw.client.post(
                f"/api/steps/{pending['id']}/{decision}",
                headers=auth(),
                json={"reason": "not today", "by": "alice"},
            )
            assert response.status_code == 200, response.text
            [run] = gw.finished_runs(1)
            again = gw.client.post(f"/api/steps/{pending['id']}/{decision}", headers=auth())

    assert run.status == "succeeded"
    assert again.status_code == 409
    assert response.json()["decided_by"] == "alice"
    assert [c["label"] for c in CALLS] == (["vip"] if decision == "approve" else [])


def test_redaction_covers_credential_headers_and_sensitive_fields_at_any_depth() -> None:
    from gateway.api.detail import Redactor, body_view

    redactor = Redactor(["card_number"])
    headers = redactor.headers(
        {"Stripe-Signature": "t=1,v1=abc", "Authorization": "Bearer x", "X-Request-Id": "r1"}
    )
    assert headers == {
        "Stripe-Signature": "[redacted]",
        "Authorization": "[redacted]",
        "X-Request-Id": "r1",
    }
    body = b'{"customer": {"Card_Number": "4242", "api_token": "t", "name": "Ann"}, "n": [1]}'
    view = body_view(body, redactor)
    assert view["payload"] == {
        "customer": {"Card_Number": "[redacted]", "api_token": "[redacted]", "name": "Ann"},
        "n": [1],
    }
    assert view["body_redacted"] is True
    assert "4242" not in view["body"]


def test_a_body_that_is_not_utf8_is_shown_as_base64() -> None:
    from gateway.api.detail import Redactor, body_view

    view = body_view(b"\xff\xfe\x00binary", Redactor())
    assert (view["body_encoding"], view["body"]) == (
        "base64",
        base64.b64encode(b"\xff\xfe\x00binary").decode(),
    )
