from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from gateway import config as config_module
from gateway.app import create_app
from gateway.config import Config
from gateway.testing.server import serve_in_thread
from tests.fixtures import SIGNED_AT, TEST_SOURCES


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a gateway.yaml in tmp_path with every test source; keyword args override keys."""

    def write(**overrides: Any) -> Path:
        document: dict[str, Any] = {
            "store": f"sqlite:///{tmp_path / 'gateway.db'}",
            "sources": TEST_SOURCES,
            "rules": str(tmp_path / "rules"),
        }
        document.update(overrides)
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    return write


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Config:
    return config_module.load(write_config(), environ={})


class Gateway:
    """A running gateway (real uvicorn on loopback) and a client for it."""

    def __init__(self, url: str, app: Any) -> None:
        self.url = url
        self.app = app
        self.client = httpx2.Client(base_url=url, timeout=30)

    def post(self, source: str, body: bytes, headers: dict[str, str]) -> httpx2.Response:
        return self.client.post(f"/hooks/{source}", content=body, headers=headers)

    def count(self) -> int:
        import asyncio

        from gateway.store import Store

        async def count() -> int:
            store = Store(self.app.state.config.store_url)
            try:
                return await store.count_events()
            finally:
                await store.engine.dispose()

        return asyncio.run(count())


@pytest.fixture
def gateway(config: Config) -> Iterator[Gateway]:
    """The gateway with its clock frozen at the fixtures' signing time."""
    app = create_app(config, clock=lambda: float(SIGNED_AT))
    with serve_in_thread(app) as url:
        gw = Gateway(url, app)
        yield gw
        gw.client.close()
