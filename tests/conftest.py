from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from gateway import config as config_module
from gateway.app import create_app
from gateway.config import Config
from gateway.store import Store
from gateway.testing.downstream import CountingDownstream, counting_downstream
from gateway.testing.server import serve_in_thread
from tests.fixtures import SIGNED_AT, TEST_SOURCES, Fixture
from tests.postgres import fresh_database


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files that spawn gateway processes (marked `slow`) first, each file's tests in order.

    The suite runs one process per core, a file at a time on each (pyproject's addopts): the
    longest files started last would leave one core busy for minutes while the other idles.
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: order kept within


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
        (tmp_path / "rules").mkdir(exist_ok=True)
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    return write


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Config:
    return config_module.load(write_config(), environ={})


class Gateway:
    """A running gateway (real uvicorn on loopback) and a client for it."""

    def __init__(self, url: str, app: Any, clock: list[float]) -> None:
        self.url = url
        self.app = app
        self._clock = clock  # the frozen instant the app reads; tests move it with `now`
        self.client = httpx2.Client(base_url=url, timeout=30)

    def post(self, source: str, body: bytes, headers: dict[str, str]) -> httpx2.Response:
        return self.client.post(f"/hooks/{source}", content=body, headers=headers)

    @property
    def now(self) -> float:
        return self._clock[0]

    @now.setter
    def now(self, value: float) -> None:
        self._clock[0] = value

    def deliver(self, fixture: Fixture) -> httpx2.Response:
        """Post a fixture as its provider sent it, with the clock at its signing time."""
        self.now = fixture.signed_at
        return self.post(fixture.source, fixture.body, fixture.headers)

    def count(self) -> int:
        import asyncio

        from gateway.store import Store

        async def count() -> int:
            store = Store(self.app.state.gateway.config.store_url)
            try:
                return await store.events.count()
            finally:
                await store.engine.dispose()

        return asyncio.run(count())


@pytest.fixture
def gateway(config: Config) -> Iterator[Gateway]:
    """The ingest role only (events stay pending), its clock frozen at the signing time."""
    now = [float(SIGNED_AT)]
    app = create_app(config, clock=lambda: now[0], roles=frozenset({"ingest"}))
    with serve_in_thread(app) as url:
        gw = Gateway(url, app, now)
        yield gw
        gw.client.close()


@pytest.fixture
def downstream() -> Iterator[tuple[CountingDownstream, str]]:
    """A loopback downstream that counts each effect and attempt (`CountingDownstream`)."""
    with counting_downstream() as served:
        yield served


@pytest.fixture
def recording() -> None:
    """The test tools (tests/recording.py) start with no recorded call, no planned failure."""
    from tests import recording as tools

    tools.reset()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store URL on an empty database of each backend (PostgreSQL when CI is set)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    async with fresh_database() as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """The store on `store_url`, opened (migrated) and closed after the test."""
    opened = Store(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
