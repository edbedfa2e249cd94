"""Dashboard sessions end on the server at logout, for every replica sharing the store.

A copied session cookie replayed after its logout is refused, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
import yaml

from gateway import config as config_module
from gateway.app import create_app
from gateway.store import Store
from gateway.testing.server import serve_in_thread
from tests.postgres import fresh_database

TOKEN = "session-test-token"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    with asyncio.Runner() as runner:  # one loop for both ends of the database's life
        database = fresh_database()
        url = runner.run(database.__aenter__())
        try:
            yield url
        finally:
            runner.run(database.__aexit__(None, None, None))


@pytest.fixture
def replicas(store_url: str, tmp_path: Path) -> Iterator[list[httpx2.Client]]:
    """Two gateways sharing one store (the dashboard's replicas), a client for each."""
    (tmp_path / "rules").mkdir()
    path = tmp_path / "gateway.yaml"
    document = {"store": store_url, "admin_token": TOKEN, "rules": str(tmp_path / "rules")}
    path.write_text(yaml.safe_dump(document))
    config = config_module.load(path, environ={})
    with ExitStack() as stack:
        clients = []
        for _ in range(2):
            url = stack.enter_context(serve_in_thread(create_app(config, roles=frozenset())))
            clients.append(stack.enter_context(httpx2.Client(base_url=url, timeout=30)))
        yield clients


def log_in(client: httpx2.Client) -> str:
    """The `Cookie` header of a new session (the browser's copy of it)."""
    response = client.post("/ui/login", data={"token": TOKEN})
    assert response.status_code == 303, response.text
    return response.headers["set-cookie"].split(";")[0]


def log_out(client: httpx2.Client, cookie: str) -> None:
    page = client.get("/ui/events", headers={"Cookie": cookie})
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None, page.text
    response = client.post("/ui/logout", data={"csrf": csrf.group(1)}, headers={"Cookie": cookie})
    assert (response.status_code, response.headers["location"]) == (303, "/ui/login")


def events_page(client: httpx2.Client, cookie: str, **headers: str) -> httpx2.Response:
    return client.get("/ui/events", headers={"Cookie": cookie, **headers})


def test_a_session_cookie_replayed_after_logout_is_sent_to_the_login_form(
    replicas: list[httpx2.Client],
) -> None:
    client = replicas[0]
    cookie = log_in(client)
    assert events_page(client, cookie).status_code == 200

    log_out(client, cookie)
    replayed = events_page(client, cookie)

    assert replayed.status_code == 303
    assert replayed.headers["location"].startswith("/ui/login?next=")


def test_a_page_fetch_with_a_logged_out_session_gets_401(replicas: list[httpx2.Client]) -> None:
    client = replicas[0]
    cookie = log_in(client)
    log_out(client, cookie)

    assert events_page(client, cookie, **{"X-Requested-With": "fetch"}).status_code == 401


def test_a_logged_out_session_cannot_post_a_form(replicas: list[httpx2.Client]) -> None:
    client = replicas[0]
    cookie = log_in(client)
    page = events_page(client, cookie)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    log_out(client, cookie)

    response = client.post(
        "/ui/rules/reload", data={"csrf": csrf.group(1)}, headers={"Cookie": cookie}
    )

    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login?next=")


def test_logout_on_one_replica_ends_the_session_on_the_other(
    replicas: list[httpx2.Client],
) -> None:
    first, second = replicas
    cookie = log_in(first)
    assert events_page(second, cookie).status_code == 200

    log_out(first, cookie)

    assert events_page(second, cookie).status_code == 303


def test_logout_ends_only_its_own_session(replicas: list[httpx2.Client]) -> None:
    client = replicas[0]
    leaving, staying = log_in(client), log_in(client)

    log_out(client, leaving)

    assert events_page(client, staying).status_code == 200


async def test_revocations_past_their_session_expiry_are_forgotten(store_url: str) -> None:
    store = Store(store_url)
    await store.open()
    now = datetime.now(UTC)
    try:
        await store.sessions.revoke("expired-nonce", now - timedelta(seconds=1), now=now)
        await store.sessions.revoke("live-nonce", now + timedelta(hours=1), now=now)

        assert not await store.sessions.revoked("expired-nonce")
        assert await store.sessions.revoked("live-nonce")
    finally:
        await store.close()
