"""Issue 13, items 5 and 6: what the events table cannot hold, and how deep a body may nest.

A value that does not fit the table is refused alone with 400, on SQLite and PostgreSQL alike;
a body nested deeper than `max_json_depth` is refused at the door, and bodies stored deeper
than that before the limit existed never make a page answer 500.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx2
import pytest

import gateway.ingest.providers  # noqa: F401  (fills the registry)
from gateway import config as config_module
from gateway.config import Config, SourceConfig
from gateway.errors import EventDoesNotFit
from gateway.ingest.provider import PROVIDERS
from gateway.store import Store
from tests import test_store
from tests.conftest import Gateway
from tests.fixtures import SIGNED_AT, TEST_SOURCES, requires_fixtures

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]
store_url = test_store.store_url  # an empty database of each backend, as the store tests use


@pytest.fixture
def config(write_config: Callable[..., Path], store_url: str) -> Config:
    """The test sources on each backend: the `gateway` fixture serves this config."""
    return config_module.load(write_config(store=store_url), environ={})


def signed(source: str, body: bytes, **headers: str) -> dict[str, str]:
    settings = SourceConfig.model_validate(TEST_SOURCES[source])
    sent = {"Content-Type": "application/json", **headers}
    return sent | PROVIDERS[settings.provider](settings).sign(body, sent, SIGNED_AT)


def github(gateway: Gateway, body: bytes, **headers: str) -> httpx2.Response:
    """Post `body` signed as GitHub would, with the fixture's kind of headers."""
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1", **headers}
    return gateway.post("ci", body, signed("ci", body, **headers))


def nested(depth: int) -> bytes:
    """A JSON body whose objects and arrays nest exactly `depth` levels."""
    return (
        b'{"a":' * (depth // 2)
        + b"[" * (depth % 2)
        + b"1"
        + b"]" * (depth % 2)
        + b"}" * (depth // 2)
    )


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
        stored = await store.count_events()
    finally:
        await store.close()

    refused = results.pop(3)
    assert isinstance(refused, EventDoesNotFit) and "type" in str(refused)
    assert all(not isinstance(r, BaseException) and not r.duplicate for r in results), results
    assert stored == 6
