"""What a gateway without assistants, MCP or Jira keeps out of memory: the clients it never uses.

Each of these packages costs from 10 to 50 MB resident (docs/benchmarks.md, memory); a gateway
whose config and rules do not use them must not import them, at start or while it works.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from gateway.store import database

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
)

# Runs in a fresh interpreter: `gateway serve`'s imports (the CLI), then a whole gateway on
# loopback (ingest, worker, scheduler) that stores a signed order and runs a log.record rule.
SCRIPT = """
import json, sys
from pathlib import Path

import gateway.cli  # noqa: F401  (what `gateway serve` imports before it starts)
from tests.live import live_gateway

rules = '''
- name: log-orders
  on: {source: shop, event: orders/create}
  actions:
    - log.record: {message: "order {{ payload.name }}"}
'''
with live_gateway(Path(sys.argv[1]), rules) as gateway:
    gateway.post_order("lazy-1", test_event="lazy-1")
    [run] = gateway.finished_runs(1)
    assert run.status == "succeeded", run
loaded = sorted(name for name in json.loads(sys.argv[2]) if name in sys.modules)
print("LOADED " + json.dumps(loaded))
"""


def _loaded(folder: Path, watched: tuple[str, ...]) -> list[str]:
    """Which of `watched` a fresh gateway process on `folder` had imported by the end."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(folder), json.dumps(watched)],
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
