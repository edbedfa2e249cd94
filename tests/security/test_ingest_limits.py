"""Issue 13, items 5 and 6: what the events table cannot hold, and how deep a body may nest.

A value that does not fit the table is refused alone with 400, on SQLite and PostgreSQL alike;
a body nested deeper than `max_json_depth` is refused at the door, and bodies stored deeper
than that before the limit existed never make a page answer 500.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import orjson
import pytest

import gateway.ingest.providers  # noqa: F401  (fills the registry)
from gateway import config as config_module
from gateway.config import Config, SourceConfig
from gateway.errors import ConfigError, EventDoesNotFit
from gateway.ingest.provider import PROVIDERS
from gateway.store import NewEvent, Store
from tests import test_store
from tests.conftest import Gateway
from tests.fixtures import SIGNED_AT, TEST_SOURCES, requires_fixtures
from tests.live import LiveGateway, live_gateway
from tests.recording import CALLS

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]


@pytest.fixture
def config(write_config: Callable[..., Path], store_url: str) -> Config:
    """The test sources on each backend: the `gateway` fixture serves this config."""
    return config_module.load(write_config(store=store_url), environ={})


def signed(source: str, body: bytes, **headers: str) -> dict[str, str]:
    settings = SourceConfig.model_validate(TEST_SOURCES[source])
    sent = {"Content-Type": "application/json", **headers}
    return sent | PROVIDERS[settings.provider](settings).sign(body, sent, SIGNED_AT)


def github(gateway: Gateway | LiveGateway, body: bytes, **headers: str) -> httpx2.Response:
    """Post `body` signed as GitHub would, with the fixture's kind of headers."""
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1", **headers}
    return gateway.client.post("/hooks/ci", content=body, headers=signed("ci", body, **headers))


def nested(depth: int) -> bytes:
    """A JSON body whose objects and arrays, alternately, nest exactly `depth` levels."""
    opening = b"".join(b'{"a":' if level % 2 == 0 else b"[" for level in range(depth))
    closing = b"".join(b"}" if level % 2 == 0 else b"]" for level in reversed(range(depth)))
    return opening + b"1" + closing


# -- item 5: every value fits the events table before it joins a batch -------------------------


# The events columns a GitHub header fills, with their lengths.
COLUMNS = pytest.mark.parametrize(
    ("field", "header", "limit"),
    [("type", "X-GitHub-Event", 200), ("delivery_id", "X-GitHub-Delivery", 300)],
)


@COLUMNS
def test_a_value_at_its_column_length_is_stored(
    gateway: Gateway, field: str, header: str, limit: int
) -> None:
    response = github(gateway, b'{"n": 1}', **{header: "x" * limit})

    assert response.status_code == 202, response.text


@COLUMNS
def test_a_value_one_over_its_column_length_is_400_naming_field_and_limit(
    gateway: Gateway, field: str, header: str, limit: int
) -> None:
    response = github(gateway, b'{"n": 2}', **{header: "x" * (limit + 1)})

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "malformed_payload"
    assert field in response.json()["detail"] and str(limit) in response.json()["detail"]
    assert gateway.count() == 0


def test_an_oversized_value_in_a_concurrent_burst_is_refused_alone(gateway: Gateway) -> None:
    count = 16
    start = threading.Barrier(count)
    statuses: dict[int, int] = {}

    def send(n: int) -> None:
        event = "x" * 201 if n == 7 else "push"
        body = b'{"n": %d}' % n
        headers = signed("ci", body, **{"X-GitHub-Event": event, "X-GitHub-Delivery": f"d-{n}"})
        with httpx2.Client(base_url=gateway.url, timeout=30) as client:
            start.wait()
            statuses[n] = client.post("/hooks/ci", content=body, headers=headers).status_code

    threads = [threading.Thread(target=send, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses.pop(7) == 400
    assert set(statuses.values()) == {202}
    assert gateway.count() == count - 1


def test_a_nul_character_in_a_signed_body_field_is_400(gateway: Gateway) -> None:
    body = b'{"id": "evt_nul", "type": "invoice.\\u0000paid"}'

    response = gateway.post("stripe", body, signed("stripe", body))

    assert response.status_code == 400, response.text
    assert "type" in response.json()["detail"]
    assert gateway.count() == 0


async def test_a_row_the_database_refuses_does_not_fail_the_rest_of_its_batch(
    store_url: str,
) -> None:
    # Defence in depth: bypass the check at the door (`_submit` rather than `add`) with a row
    # that neither backend can encode, in the same batch as good rows.
    store = Store(store_url)
    await store.open()
    good = [test_store.new_event(f"good-{n}", body=b'{"n": %d}' % n) for n in range(6)]
    bad = replace(test_store.new_event("bad"), type="\ud800")
    try:
        results = await asyncio.gather(
            *(store.writer.add(new) for new in good[:3]),
            store.writer._submit(bad),
            *(store.writer.add(new) for new in good[3:]),
            return_exceptions=True,
        )
        stored = await store.events.count()
    finally:
        await store.close()

    refused = results.pop(3)
    assert isinstance(refused, EventDoesNotFit) and "type" in str(refused)
    assert all(not isinstance(r, BaseException) and not r.duplicate for r in results), results
    assert stored == 6


# -- item 6: nesting ---------------------------------------------------------------------------


def test_body_nested_64_levels_is_accepted(gateway: Gateway) -> None:
    response = github(gateway, nested(64))

    assert response.status_code == 202, response.text


def test_body_nested_65_levels_is_400_naming_the_limit(gateway: Gateway) -> None:
    response = github(gateway, nested(65))

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_payload"
    assert "64" in response.json()["detail"]
    assert gateway.count() == 0


def test_max_json_depth_in_gateway_yaml_is_the_limit_at_the_door(tmp_path: Path) -> None:
    with live_gateway(tmp_path, "[]", max_json_depth=8) as gw:
        statuses = [github(gw, nested(depth)).status_code for depth in (8, 9)]

    assert statuses == [202, 400]


def test_rule_tester_and_the_door_agree_on_max_json_depth(tmp_path: Path) -> None:
    api = {"Authorization": f"Bearer {TOKEN}"}
    with live_gateway(tmp_path, "[]", max_json_depth=8, admin_token=TOKEN) as gw:
        door = [github(gw, nested(depth)).status_code for depth in (8, 9)]
        tester = [
            gw.client.post(
                "/api/rules/test",
                headers=api,
                json={"source": "ci", "type": "push", "payload": orjson.loads(nested(depth))},
            ).status_code
            for depth in (8, 9)
        ]

    assert (door, tester) == ([202, 400], [200, 422])


def test_max_json_depth_above_what_every_reader_handles_is_a_config_error(
    write_config: Callable[..., Path],
) -> None:
    with pytest.raises(ConfigError, match="max_json_depth"):
        config_module.load(write_config(max_json_depth=129), environ={})


# A body stored before the limit existed (0.1 accepted up to orjson's 1024 levels).
DEEP_RULES = """
- name: echo
  on: {source: ci, event: push}
  actions:
    - test.record: {label: "{{ payload | tojson }}"}
"""
TOKEN = "deep-body-token"


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[LiveGateway]:
    with live_gateway(tmp_path, DEEP_RULES, admin_token=TOKEN, worker={"max_attempts": 1}) as gw:
        yield gw


def store_directly(gw: LiveGateway, body: bytes) -> int:
    new = NewEvent(
        source="ci",
        provider="github",
        type="push",
        delivery_id=f"deep-{len(body)}",
        headers={"x-github-event": "push"},
        body=body,
        received_at=datetime.now(UTC),
    )

    async def add() -> int:
        store = Store(gw.app.state.gateway.config.store_url)
        await store.open(migrate=False)
        try:
            return (await store.events.add(new)).id
        finally:
            await store.close()

    return asyncio.run(add())


def dashboard(gw: LiveGateway) -> dict[str, str]:
    login = gw.client.post("/ui/login", data={"token": TOKEN, "next": "/ui/events"})
    cookie = login.headers["set-cookie"].split(";", 1)[0]
    return {"Cookie": cookie}


@pytest.mark.parametrize("depth", [300, 1000])
def test_event_stored_too_deep_before_the_limit_reads_without_error(
    admin: LiveGateway, depth: int
) -> None:
    event_id = store_directly(admin, nested(depth))
    api = {"Authorization": f"Bearer {TOKEN}"}
    session = dashboard(admin)

    detail = admin.client.get(f"/api/events/{event_id}", headers=api)
    tested = admin.client.post("/api/rules/test", headers=api, json={"event_id": event_id})
    page = admin.client.get(f"/ui/events/{event_id}", headers=session)
    timeline = admin.client.get(f"/ui/events/{event_id}/timeline", headers=session)

    assert detail.status_code == 200, detail.text
    assert detail.json()["payload"] is None
    assert tested.status_code == 200, tested.text
    assert (page.status_code, timeline.status_code) == (200, 200)


def test_rule_tester_refuses_a_payload_nested_deeper_than_ingest_accepts(
    admin: LiveGateway,
) -> None:
    payload = orjson.loads(nested(300))
    event = {"source": "ci", "type": "push", "payload": payload}

    response = admin.client.post(
        "/api/rules/test", headers={"Authorization": f"Bearer {TOKEN}"}, json=event
    )

    assert response.status_code == 422, response.text
    assert "max_json_depth" in response.text


def test_event_stored_too_deep_before_the_limit_does_not_stop_the_worker(
    admin: LiveGateway,
) -> None:
    store_directly(admin, nested(1000))
    store_directly(admin, b'{"after": true}')

    runs = admin.finished_runs(2)

    assert len(runs) == 2
    assert any(call["label"] == '{"after": true}' for call in CALLS)
