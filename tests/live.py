"""A whole gateway (ingest + worker) on loopback, with rules written by the test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import orjson

from gateway import config as config_module
from gateway.app import create_app
from gateway.config import SourceConfig
from gateway.ingest.provider import PROVIDERS
from gateway.store import Event, Run, Step, Store
from gateway.testing.server import serve_in_thread
from tests.fixtures import TEST_SOURCES, load

T = TypeVar("T")


class LiveGateway:
    def __init__(self, url: str, app: Any) -> None:
        self.url = url
        self.app = app
        self.client = httpx2.Client(base_url=url, timeout=30)
        shop = SourceConfig.model_validate(TEST_SOURCES["shop"])
        self._shopify = PROVIDERS["shopify"](shop)

    def post_order(self, event_id: str, topic: str = "", **changes: Any) -> httpx2.Response:
        """A real Shopify order (fixture), with `changes` merged into it, signed for `shop`
        (sent under `topic` if given)."""
        fixture = load("shopify", "orders_create")
        body = fixture.body
        if changes:
            body = orjson.dumps({**orjson.loads(fixture.body), **changes})
        headers = {**fixture.headers, "X-Shopify-Event-Id": event_id}
        if topic:
            headers = {k: v for k, v in headers.items() if k.lower() != "x-shopify-topic"}
            headers["X-Shopify-Topic"] = topic
        headers |= self._shopify.sign(body, headers, time.time())
        response = self.client.post("/hooks/shop", content=body, headers=headers)
        assert response.status_code in (200, 202), response.text
        return response

    def query(self, read: Callable[[Store], Any]) -> Any:
        async def go() -> Any:
            store = Store(self.app.state.gateway.config.store_url)
            try:
                return await read(store)
            finally:
                await store.engine.dispose()
                await store.write_engine.dispose()

        return asyncio.run(go())

    def runs(self, **filters: Any) -> list[Run]:
        return list(reversed(self.query(lambda s: s.runs.find(limit=10_000, **filters))))

    def steps(self, run_id: int) -> list[Step]:
        return list(self.query(lambda s: s.steps.of_run(run_id)))

    def event(self, event_id: int) -> Event:
        found = self.query(lambda s: s.events.get(event_id))
        assert found is not None
        return found  # type: ignore[no-any-return]

    def wait_for(self, check: Callable[[], T], timeout: float = 30) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; last value {value!r}")
            time.sleep(0.02)

    def finished_runs(self, count: int, timeout: float = 30) -> list[Run]:
        """Wait until `count` runs exist and none is still to do; return them, oldest first."""

        def done() -> list[Run] | None:
            found = self.runs()
            settled = all(r.status in ("succeeded", "failed", "dead") for r in found)
            return found if len(found) >= count and settled else None

        return self.wait_for(done, timeout)


@contextmanager
def live_gateway(
    tmp_path: Path, rules: str, *, worker: dict[str, Any] | None = None, **overrides: Any
) -> Iterator[LiveGateway]:
    import yaml

    rules_dir = tmp_path / "rules"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "rules.yaml").write_text(rules)
    document: dict[str, Any] = {
        "store": f"sqlite:///{tmp_path / 'gateway.db'}",
        "sources": TEST_SOURCES,
        "rules": str(rules_dir),
        "worker": {"backoff_base": 0.01, "backoff_max": 0.05, **(worker or {})},
        **overrides,
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    config = config_module.load(path, environ={})
    app = create_app(config)
    with serve_in_thread(app) as url:
        live = LiveGateway(url, app)
        try:
            yield live
        finally:
            live.client.close()


# An assistant rule whose one tool call waits for approval, and a priced profile for it: one
# turn of 120 tokens in and 30 out costs $0.000036 (the dashboard's and the CLI's small costs).
APPROVED_TRIAGE = """
- name: triage
  on: {source: shop, event: orders/create}
  assistant:
    model: default
    prompt: "New order {{ payload.name }}"
    tools: [test.record]
    policy:
      test.record: {approve: true}
"""


def priced_models(base_url: str) -> dict[str, Any]:
    profile = {"api": "responses", "base_url": base_url, "model": "scripted-model"}
    return {"default": profile | {"prices": {"input": 0.15, "output": 0.6}}}
