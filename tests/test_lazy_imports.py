"""What a gateway without assistants, MCP or Jira keeps out of memory: the clients it never uses.

Each of these costs from 1 to 50 MB resident (docs/benchmarks.md, memory; issue 22's target is
80 MB for the whole gateway); a gateway whose config and rules do not use them must not import
them, at start or while it works.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from gateway import cli
from gateway.store import database
from tests.fixtures import TEST_SOURCES
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
    # The tool families no rule and no `handlers:` block names (the entry points of the
    # `gateway.tools` group are imported by name, at the first rule or block naming one).
    "handlers.http",
    "handlers.jira",
    "handlers.email",
    "handlers.slack",
    "handlers.sql",
    "handlers.report",
    "handlers.gateway_runs",
    # The knowledge library, loaders and embeddings without any collection
    "gateway.knowledge.library",
    "gateway.knowledge.service",
    "gateway.reconcile",  # reconciliation: only with a source that has `reconcile:`
    "stamina",  # the PostgreSQL listener's retries: not on SQLite
    "tenacity",
)

# The providers of the sources a gateway with the `shop` source alone does not have.
OTHER_PROVIDERS = tuple(
    f"gateway.ingest.providers.{name}"
    for name in [
        "circleci",
        "generic",
        "github",
        "gitlab",
        "intercom",
        "jenkins",
        "pagerduty",
        "slack",
        "woocommerce",
        "zendesk",
    ]
)

# Runs in a fresh interpreter: `gateway serve`'s imports (the CLI), then a whole gateway on
# loopback (ingest, worker, scheduler) that stores a signed order and runs a log.record rule.
SCRIPT = """
import json, sys
from pathlib import Path

import gateway.cli, gateway.cli.serve  # noqa: F401  (what `gateway serve` imports first)
from tests.live import live_gateway

rules = sys.argv[4]
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


LOG_ORDERS = """
- name: log-orders
  on: {source: shop, event: orders/create}
  actions:
    - log.record: {message: "order {{ payload.name }}"}
"""


def _loaded(
    folder: Path, watched: tuple[str, ...], rules: str = LOG_ORDERS, **config: Any
) -> list[str]:
    """Which of `watched` a fresh gateway process on `folder` (its config with `config`, its
    one rule file `rules`) had imported by the end, once it ran a rule for a Shopify order."""
    return _run(SCRIPT, folder, json.dumps(watched), json.dumps(config), rules)


def _run(script: str, *args: object) -> list[str]:
    """The `LOADED [...]` list `script` prints, run in a fresh interpreter with `args`."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
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
    # PostgreSQL's dialect on SQLite (the tables name SQLite's partial indexes alone; an
    # in-process upgrade imports it with Alembic's own PostgreSQL support), and Jinja2 with
    # no rule to compile.
    assert "sqlalchemy.dialects.postgresql" not in imported
    assert "jinja2" not in imported
    # Nor rich: structlog is imported without it, the CLI's consoles make themselves on first
    # use, and serve prints its summary as plain lines. (`rich` itself is listed: structlog's
    # attempts, refused by gateway.plain_structlog.)
    assert [name for name in imported if name.startswith("rich.")] == []
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


def test_a_gateway_imports_the_providers_of_its_own_sources_alone(tmp_path: Path) -> None:
    watched = (*OTHER_PROVIDERS, "gateway.ingest.providers.shopify")
    shop_alone = {"shop": TEST_SOURCES["shop"]}
    assert _loaded(tmp_path, watched, sources=shop_alone) == ["gateway.ingest.providers.shopify"]


CSV_ORDERS = """
- name: csv-orders
  on: {source: shop, event: orders/create}
  actions:
    - report.csv: {name: orders.csv, columns: [order], rows: [["{{ payload.name }}"]]}
"""


def test_a_tool_family_a_rule_names_is_imported_and_its_tool_runs(tmp_path: Path) -> None:
    # The script fails unless the run of report.csv succeeded.
    assert _loaded(tmp_path, ("handlers.report", "handlers.http"), CSV_ORDERS) == [
        "handlers.report"
    ]


def test_a_tool_family_a_handlers_block_names_is_imported_at_start(tmp_path: Path) -> None:
    slack = {"slack": {"webhook_url": "http://127.0.0.1:9/slack"}}
    assert _loaded(tmp_path, ("handlers.slack", "handlers.http"), handlers=slack) == [
        "handlers.slack"
    ]


# A reload through the admin API: refused for a bad argument of a family not imported yet, then
# accepted, and the family's tool runs for the next order.
RELOAD_SCRIPT = """
import json, sys
from pathlib import Path

from tests.live import live_gateway
from tests.test_lazy_imports import CSV_ORDERS, LOG_ORDERS

token = "lazy-imports-admin-token-0123456789"
auth = {"Authorization": "Bearer " + token}
stages = []
with live_gateway(Path(sys.argv[1]), LOG_ORDERS, admin_token=token) as gateway:
    stages.append(("start", "handlers.report" in sys.modules))
    rules = Path(sys.argv[1]) / "rules" / "rules.yaml"
    rules.write_text(CSV_ORDERS.replace("columns:", "colour: red, columns:"))
    refused = gateway.client.post("/api/rules/reload", headers=auth)
    assert refused.status_code == 422, refused.text
    stages.append(("refused", refused.json()["problems"]))
    rules.write_text(CSV_ORDERS)
    assert gateway.client.post("/api/rules/reload", headers=auth).status_code == 200
    gateway.post_order("lazy-reload-1", test_event="lazy-reload-1")
    [run] = gateway.finished_runs(1)
    stages.append(("ran", [run.rule, run.status]))
print("LOADED " + json.dumps(stages))
"""


def test_a_reload_checks_the_arguments_of_a_family_not_imported_yet(tmp_path: Path) -> None:
    [start, refused, ran] = _run(RELOAD_SCRIPT, tmp_path)
    assert start == ["start", False]
    assert refused[0] == "refused"
    assert any("report.csv has no argument 'colour'" in problem for problem in refused[1])
    assert ran == ["ran", ["csv-orders", "succeeded"]]


@pytest.mark.slow
def test_sighup_refuses_a_bad_argument_of_a_family_not_imported_yet(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "log.yaml").write_text(LOG_ORDERS)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'gateway.db'}\n"
        "sources: {shop: {provider: shopify, secret: lazy-imports-test-secret}}\n"
    )
    process = GatewayProcess(config).start()
    try:
        bad = CSV_ORDERS.replace("csv-orders", "bad-csv").replace("columns:", "colour: 1, columns:")
        (tmp_path / "rules" / "csv.yaml").write_text(bad)
        assert process.proc is not None
        process.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "rules.reload_refused" not in process.output():
            assert time.monotonic() < deadline, process.output()[-3000:]
            time.sleep(0.05)
        assert "report.csv has no argument 'colour'" in process.output()
        assert process.proc.poll() is None
    finally:
        process.stop()


def test_jinja2_is_imported_by_the_first_template_and_not_before(tmp_path: Path) -> None:
    plain = LOG_ORDERS.replace("order {{ payload.name }}", "an order")
    (tmp_path / "plain").mkdir()
    (tmp_path / "templated").mkdir()
    assert _loaded(tmp_path / "plain", ("jinja2",), plain) == []
    assert _loaded(tmp_path / "templated", ("jinja2",)) == ["jinja2"]  # and the run succeeded
