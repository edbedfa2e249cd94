"""What a gateway without assistants, MCP or Jira keeps out of memory: the clients it never uses.

Each of these costs from 1 to 50 MB resident (docs/benchmarks.md, memory; issue 22's target is
80 MB for the whole gateway); a gateway whose config and rules do not use them must not import
them, at start or while it works.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway import cli
from gateway.store import database
from tests.process import GatewayProcess

REPO = Path(__file__).resolve().parent.parent

# Imported by the request path or the worker of such a gateway: never.
NEVER_LOADED = (
    "openai",
    "stripe",  # thin events: only where a source has `fetch: thin`
    "mcp",
    "mcp_types",
    "jsonschema",
    "jira",
    "requests",
    "stripe",
    "aiosmtplib",
    "asyncpg",
    "matplotlib",
    "opentelemetry.sdk",
    "boto3",
    "cryptography",  # Ed25519 (Standard Webhooks v1a): no such key among the test sources
    "rich.traceback",  # structlog's console tracebacks (gateway.plain_structlog)
    "apscheduler",  # only with a scheduled rule or a reconciled source
    "sqlalchemy.orm",  # the store runs Core on AsyncEngines (gateway.store.without_orm)
    "gateway.api",  # the admin API and the dashboard: only with an `admin_token`
    "gateway.ui",
    "watchfiles",  # uvicorn's --reload watcher: not installed (uvicorn without [standard])
    "websockets",
)

# Runs in a fresh interpreter: `gateway serve`'s imports (the CLI), then a whole gateway on
# loopback (ingest, worker, scheduler) that stores a signed order and runs a log.record rule.
SCRIPT = """
import json, sys
from pathlib import Path

import gateway.cli, gateway.cli.serve  # noqa: F401  (what `gateway serve` imports first)
from tests.live import live_gateway

rules = '''
- name: log-orders
  on: {source: shop, event: orders/create}
  actions:
    - log.record: {message: "order {{ payload.name }}"}
'''
overrides = json.loads(sys.argv[3])
with live_gateway(Path(sys.argv[1]), rules, **overrides) as gateway:
    gateway.post_order("lazy-1", test_event="lazy-1")
    [run] = gateway.finished_runs(1)
    assert run.status == "succeeded", run
    if "admin_token" in overrides:  # the admin API answers, as without lazy imports
        auth = {"Authorization": "Bearer " + overrides["admin_token"]}
        assert gateway.client.get("/api/runs", headers=auth).status_code == 200
        assert gateway.client.get("/ui/login").status_code == 200
loaded = sorted(name for name in json.loads(sys.argv[2]) if name in sys.modules)
print("LOADED " + json.dumps(loaded))
"""


def _loaded(folder: Path, watched: tuple[str, ...], **config: str) -> list[str]:
    """Which of `watched` a fresh gateway process on `folder` (its config with `config`) had
    imported by the end."""
    script = textwrap.dedent(SCRIPT)
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder), json.dumps(watched), json.dumps(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("LOADED ")]
    loaded: list[str] = json.loads(line.removeprefix("LOADED "))
    return loaded


def test_a_gateway_without_assistants_or_mcp_never_imports_their_clients(tmp_path: Path) -> None:
    assert _loaded(tmp_path, NEVER_LOADED) == []


def test_a_gateway_whose_store_is_at_the_head_revision_does_not_import_alembic(
    tmp_path: Path,
) -> None:
    assert _loaded(tmp_path, ("alembic",)) == ["alembic"]  # a new store: migrated
    assert _loaded(tmp_path, ("alembic",)) == []  # the same store, at its head already


def test_the_head_read_from_the_migration_files_is_alembics_head() -> None:
    assert database.file_head() == database.head_revision()


def test_the_admin_api_and_dashboard_are_imported_with_an_admin_token(tmp_path: Path) -> None:
    token = "lazy-imports-admin-token-0123456789"
    assert _loaded(tmp_path, ("gateway.api", "gateway.ui"), admin_token=token) == [
        "gateway.api",
        "gateway.ui",
    ]


def test_gateway_serve_upgrades_a_new_store_without_importing_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upgrade runs in a child process (`database.upgrade_apart`); the server's own
    imports, as `-X importtime` lists them (the child's are not in its output), hold none."""
    (tmp_path / "rules").mkdir()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'gateway.db'}\n"
        "sources: {shop: {provider: shopify, secret: lazy-imports-test-secret}}\n"
    )
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    process = GatewayProcess(config).start()
    monkeypatch.delenv("PYTHONPROFILEIMPORTTIME")
    try:
        imported = [
            line.rsplit("|", 1)[1].strip()
            for line in process.output().splitlines()
            if line.startswith("import time:") and "|" in line
        ]
    finally:
        process.stop()

    assert "gateway.store" in imported  # the listing is the server's
    assert [name for name in imported if name.split(".")[0] == "alembic"] == []
    # The HTTP client (the test harness above imports it itself): by a tool's first call.
    assert [name for name in imported if name.split(".")[0] == "httpx2"] == []
    assert "rich._emoji_codes" not in imported  # the CLI's consoles print no emoji codes
    # Nor the other commands' modules: `gateway serve` registers its own alone.
    others = {f"gateway.cli.{name}" for name in cli.COMMANDS if name != "serve"}
    assert sorted(others & set(imported)) == []
    assert "gateway.cli.serve" in imported
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        [(revision,)] = db.execute("SELECT version_num FROM alembic_version").fetchall()
    assert revision == database.file_head()


def test_the_lean_sqlalchemy_asyncio_package_completes_itself_when_asked() -> None:
    """A library or test that wants `AsyncSession` still gets it, and the package is whole."""
    script = """
import sys
import gateway.store
import sqlalchemy.ext.asyncio as package
assert "sqlalchemy.orm" not in sys.modules
assert package.AsyncEngine is package.engine.AsyncEngine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
assert "sqlalchemy.orm" in sys.modules and AsyncSession.__module__.endswith("session")
assert package.AsyncEngine is package.engine.AsyncEngine
print("OK")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "OK", done.stderr[-2000:]
