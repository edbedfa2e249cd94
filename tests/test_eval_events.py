"""`gateway eval --events QUERY`: events chosen by the admin API's event filters (source, type,
status, since, until) and payload fields, read by the API's own parser; a bad query is a
usage error (exit 2) that says what is wrong, and nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.api.inputs import MAX_PAYLOAD_DEPTH, MAX_PAYLOAD_MATCHES
from tests.fixtures import requires_fixtures
from tests.live import live_gateway
from tests.test_eval import eval_cli

pytestmark = requires_fixtures

TOKEN = "eval-events-token"
# Shadow mode records the call and makes none: no Jira is needed.
CANDIDATE = """
- name: file-order
  on: {source: shop, event: orders/create}
  actions:
    - jira.create_issue: {project: OPS, summary: "Order {{ payload.name }}"}
"""


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A gateway store with four orders (no live rule), two of them at 500.00."""
    folder = tmp_path_factory.mktemp("events")
    prices = ["10.00", "500.00", "20.00", "500.00"]
    with live_gateway(folder, "[]", admin_token=TOKEN) as gw:
        for i, price in enumerate(prices, start=1):
            gw.post_order(f"e{i}", name=f"#{i}", total_price=price, customer={"id": i})
        gw.wait_for(lambda: len(gw.query(lambda s: s.events.find(status="unmatched"))) == 4)
        api_since = gw.client.get(
            "/api/events", params={"since": "1h"}, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert api_since.status_code == 200, api_since.text
        assert len(api_since.json()["items"]) == 4  # the API reads `1h` as the eval does
    return folder, prices


def selected(folder: Path, query: str, *args: str) -> list[int]:
    code, output, report = eval_cli(folder, CANDIDATE, "--events", query, *args)
    assert code == 0, output
    return [event["event_id"] for event in report["events"]]  # type: ignore[attr-defined]


def test_events_selects_by_payload_field(stored: tuple[Path, list[str]]) -> None:
    folder, _ = stored
    assert selected(folder, "source=shop payload.total_price=500.00") == [2, 4]
    assert selected(folder, "payload.customer.id=3") == [3]  # a number, as its JSON text
    assert selected(folder, "payload.customer.id=3 payload.total_price=500.00") == []


def test_events_takes_an_api_query_string_and_time_bounds(stored: tuple[Path, list[str]]) -> None:
    folder, _ = stored
    assert selected(folder, "type=orders/create&status=unmatched&since=1h") == [1, 2, 3, 4]
    assert selected(folder, "until=2000-01-01T00:00") == []
    assert selected(folder, "source=other") == []
    # --last counts the matching events, newest first.
    assert selected(folder, "payload.total_price=500.00", "--last", "1") == [4]


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("bogus=1", "bogus: not a filter (use source, type, status, since, until or"),
        ("source", "'source': not key=value"),
        ("since=yesterday", "since: not a time: 'yesterday'"),
        ("source='unclosed", "No closing quotation"),
        ("payload." + ".".join(["a"] * (MAX_PAYLOAD_DEPTH + 1)) + "=1", "at most 10 levels"),
        (
            " ".join(f"payload.f{i}=1" for i in range(MAX_PAYLOAD_MATCHES + 1)),
            "at most 10 payload.FIELD matches",
        ),
    ],
)
def test_a_bad_events_query_is_a_usage_error_that_names_the_problem(
    stored: tuple[Path, list[str]], query: str, said: str
) -> None:
    folder, _ = stored
    code, output, _ = eval_cli(folder, CANDIDATE, "--events", query)
    assert code == 2, output
    assert said in " ".join(output.replace("│", " ").split())


def test_payload_matches_at_their_bounds_are_accepted(stored: tuple[Path, list[str]]) -> None:
    folder, _ = stored
    deep = "payload." + ".".join(["a"] * MAX_PAYLOAD_DEPTH) + "=1"
    many = " ".join(f"payload.f{i}=1" for i in range(MAX_PAYLOAD_MATCHES))
    assert selected(folder, deep) == []
    assert selected(folder, many) == []
