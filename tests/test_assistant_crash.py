"""`kill -9` in the middle of an assistant run: the restarted gateway resumes from its journal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.testing.fake_llm import ScriptedModel, answer, call, conversation_text, delay
from gateway.testing.server import serve_in_thread
from tests.fixtures import load, requires_fixtures
from tests.process import GatewayProcess, wait_until

pytestmark = [requires_fixtures, pytest.mark.slow]

RULE = """
- name: notify
  on: {source: shop, event: orders/create}
  assistant:
    instructions: Tell the warehouse about each order, once.
    prompt: "Order {{ payload.name }}"
    tools: [http.request]
"""


@pytest.fixture
def warehouse() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A loopback HTTP service counting the requests it receives (the side effect)."""
    received: list[dict[str, object]] = []

    async def orders(request: Request) -> JSONResponse:
        received.append({"key": request.headers.get("idempotency-key"), **await request.json()})
        return JSONResponse({"accepted": True})

    with serve_in_thread(Starlette(routes=[Route("/orders", orders, methods=["POST"])])) as url:
        yield url, received


def test_run_killed_between_two_model_turns_resumes_without_repeating_anything(
    write_config: Callable[..., Path],
    tmp_path: Path,
    warehouse: tuple[str, list[dict[str, object]]],
) -> None:
    url, received = warehouse
    notify = {"method": "POST", "url": f"{url}/orders", "headers": None, "json": {"order": "#1"}}
    with ScriptedModel(
        call("http__request", {**notify, "body": None}),
        # The second turn is held while the gateway dies; the restarted gateway asks again.
        delay(5, then=answer("too late")),
        answer(
            "Warehouse told.",
            expect=lambda body: _assert('"accepted": true' in conversation_text(body).lower()),
        ),
    ) as model:
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / "notify.yaml").write_text(RULE)
        config = write_config(
            models={"default": {"api": "responses", "base_url": model.url, "model": "m"}},
            handlers={"http": {"allow_hosts": ["127.0.0.1"]}},
        )
        gateway = GatewayProcess(config).start()
        order = load("shopify", "orders_create")
        try:
            httpx2.post(
                f"{gateway.url}/hooks/shop", content=order.body, headers=order.headers
            ).raise_for_status()
            wait_until(lambda: len(model.requests) >= 2)
            gateway.kill()
            assert len(received) == 1

            gateway = GatewayProcess(config).start()
            wait_until(lambda: len(model.requests) >= 3, timeout=30)
            wait_until(
                lambda: "succeeded" in gateway.output() or _run_status(config) == "succeeded"
            )
        finally:
            gateway.stop()

    assert len(received) == 1, "the warehouse was told twice"
    assert len(model.requests) == 3  # turn 1 was not asked again
    assert _run_status(config) == "succeeded"


def _run_status(config: Path) -> str:
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "runs", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    runs = json.loads(out)
    return str(runs[0]["status"]) if runs else "none"


def _assert(condition: bool) -> None:
    assert condition
