"""Throwaway PostgreSQL databases for tests: one fresh database each, dropped afterwards.

The server is the machine's (127.0.0.1:5432, trust auth) or `GATEWAY_TEST_POSTGRES`. When it
cannot be reached the tests are skipped with the reason, except in CI (CI=true): there they fail.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get("GATEWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


# The suite runs in parallel processes (pytest-xdist) on one PostgreSQL server, and one test stops
# and starts that server: every test database holds this lock shared while it lives, the
# restart holds it exclusively (`server_to_myself`), so no other test sees the server go away.
LOCK_PATH = Path(tempfile.gettempdir()) / "gateway-tests-postgresql.lock"
_held_exclusively = False
_shared_here = 0  # test databases this process holds open


@contextmanager
def _server_lock(operation: int) -> Iterator[None]:
    with LOCK_PATH.open("a") as handle:
        fcntl.flock(handle, operation)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def server_to_myself() -> Iterator[None]:
    """Wait until no other test process uses the server, and keep it so (to restart it)."""
    global _held_exclusively
    if _shared_here:  # flock would wait for this very process for ever
        raise RuntimeError("take the server before making a test database on it")
    with _server_lock(fcntl.LOCK_EX):
        _held_exclusively = True
        try:
            yield
        finally:
            _held_exclusively = False


@contextmanager
def _server_shared() -> Iterator[None]:
    global _shared_here
    if _held_exclusively:  # this process holds the server already
        yield
        return
    with _server_lock(fcntl.LOCK_SH):
        _shared_here += 1
        try:
            yield
        finally:
            _shared_here -= 1


def _unreachable(exc: BaseException) -> None:
    reason = f"PostgreSQL at {ADMIN_URL} is unreachable: {type(exc).__name__}: {exc}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " (CI=true: PostgreSQL tests must run)", pytrace=False)
    pytest.skip(reason)


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """Create `gw_test_<random>`, yield its gateway store URL, drop it (even if still in use)."""
    with _server_shared():
        async with _fresh_database() as url:
            yield url


@asynccontextmanager
async def _fresh_database() -> AsyncIterator[str]:
    name = f"gw_test_{secrets.token_hex(6)}"
    try:
        admin = await asyncpg.connect(ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _unreachable(exc)
        raise  # unreachable: skip and fail raise
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(ADMIN_URL, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextmanager
def fresh_database_sync() -> Iterator[str]:
    """`fresh_database` for a synchronous test or fixture."""
    # One loop for both ends: asyncio.run() would finalize the suspended generator (and drop
    # the database) as soon as it returned.
    loop = asyncio.new_event_loop()
    manager = fresh_database()
    try:
        url = loop.run_until_complete(manager.__aenter__())
        try:
            yield url
        finally:
            loop.run_until_complete(manager.__aexit__(None, None, None))
    finally:
        loop.close()
