"""`kill -9` of `gateway serve` around a model turn's calls, on SQLite and PostgreSQL.

A model turn is committed as soon as it is answered; the step of a call with side effects is
started before the call; the step of a call without side effects waits for the run's next
commit (the next turn). After a restart: every side effect once (under one idempotency key),
no journaled turn asked again, and a call without side effects at most made again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.testing.fake_llm import ScriptedModel, answer, call, delay, turn
from gateway.testing.server import serve_in_thread
from tests.fixtures import load, requires_fixtures
from tests.postgres import fresh_database_sync
from tests.process import GatewayProcess, wait_until

pytestmark = [requires_fixtures, pytest.mark.slow]

RULE = """
- name: notify
  on: {source: shop, event: orders/create}
  assistant:
    instructions: Check the stock, then tell the warehouse about the order, once.
    prompt: "Order {{ payload.name }}"
    tools: [http.request, log.record]
"""
NOTE = {"message": "stock checked", "fields": None}


class Warehouse:
    """A loopback HTTP service recording each request (the side effect); `hold` keeps the
    answers back until `release`, so a gateway can be killed while its call is in flight."""

    def __init__(self) -> None:
        self.received: list[str | None] = []
        self.held = threading.Event()
        self.released = threading.Event()
        self.url = ""

    async def orders(self, request: Request) -> JSONResponse:
        self.received.append(request.headers.get("idempotency-key"))
        if self.held.is_set():
            while not self.released.is_set():
                await anyio.sleep(0.02)
        return JSONResponse({"accepted": True})

    def call(self) -> Any:
        order = {"method": "POST", "url": f"{self.url}/orders", "headers": None, "body": None}
        return call("http__request", {**order, "json": {"order": "#1"}})


@pytest.fixture
def warehouse() -> Iterator[Warehouse]:
    found = Warehouse()
    app = Starlette(routes=[Route("/orders", found.orders, methods=["POST"])])
    with serve_in_thread(app) as url:
        found.url = url
        yield found
        found.released.set()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The `store:` of the config: the default SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield {}
        return
    with fresh_database_sync() as url:
        yield {"store": url}


def test_killed_while_a_call_with_side_effects_is_in_flight_asks_no_turn_again(
    write_config: Callable[..., Path], store: dict[str, str], warehouse: Warehouse
) -> None:
    warehouse.held.set()
    with ScriptedModel(
        # The note goes first: its step is committed before the warehouse's call starts.
        turn(call("log__record", NOTE), warehouse.call()),
        answer("Warehouse told."),
    ) as model:
        config = _config(write_config, store, model)
        gateway = _started_with_an_order(config)
        try:
            wait_until(lambda: len(warehouse.received) == 1)
            gateway.kill()  # the model's turn is answered, the warehouse's call not finished
            warehouse.released.set()
            gateway = GatewayProcess(config).start()
            wait_until(lambda: _runs(config)[0]["status"] == "succeeded", timeout=30)
        finally:
            gateway.stop()

    # The call's outcome was unknown: it went again under the same key, for the API to dedupe.
    assert len(set(warehouse.received)) == 1
    assert len(model.requests) == 2  # the journaled turn was not asked again
    assert "stock checked" not in gateway.output()  # the note was journaled: not made again
    assert _tools(config) == ["log.record", "http.request"]


def test_killed_between_the_calls_and_the_next_turn_repeats_only_the_call_without_side_effects(
    write_config: Callable[..., Path], store: dict[str, str], warehouse: Warehouse
) -> None:
    with ScriptedModel(
        turn(warehouse.call(), call("log__record", NOTE)),
        # The second turn is held while the gateway dies; the restarted gateway asks again.
        delay(5, then=answer("too late")),
        answer("Warehouse told."),
    ) as model:
        config = _config(write_config, store, model)
        gateway = _started_with_an_order(config)
        try:
            wait_until(lambda: len(model.requests) >= 2)
            gateway.kill()
            gateway = GatewayProcess(config).start()
            wait_until(lambda: _runs(config)[0]["status"] == "succeeded", timeout=30)
        finally:
            gateway.stop()

    assert warehouse.received and len(warehouse.received) == 1, "the warehouse was told twice"
    assert len(model.requests) == 3  # turn 1 was not asked again
    # The note's step was to be committed with the second turn: made again after the restart.
    assert "stock checked" in gateway.output()
    assert _tools(config) == ["http.request", "log.record"]


def _config(write_config: Callable[..., Path], store: dict[str, str], model: ScriptedModel) -> Path:
    path = write_config(
        models={"default": {"api": "responses", "base_url": model.url, "model": "m"}},
        handlers={"http": {"allow_hosts": ["127.0.0.1"]}},
        **store,
    )
    (path.parent / "rules" / "notify.yaml").write_text(RULE)
    return path


def _started_with_an_order(config: Path) -> GatewayProcess:
    gateway = GatewayProcess(config).start()
    order = load("shopify", "orders_create")
    httpx2.post(
        f"{gateway.url}/hooks/shop", content=order.body, headers=order.headers
    ).raise_for_status()
    return gateway


def _gateway(config: Path, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def _runs(config: Path) -> list[dict[str, Any]]:
    return _gateway(config, "runs") or [{"status": "none"}]


def _tools(config: Path) -> list[str]:
    """The tools of the run's journaled steps, in order: each call journaled once."""
    run = _runs(config)[0]
    shown = _gateway(config, "run", str(run["id"]))
    return [step["tool"] for step in shown["steps"] if step["kind"] == "tool"]
