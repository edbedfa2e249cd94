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

REPO = Path(__file__).resolve().parent.parent

# Imported by the request path or the worker of such a gateway: never.
NEVER_LOADED = (
    "openai",
    "mcp",
    "mcp_types",
    "jsonschema",
    "jira",
    "requests",
    "aiosmtplib",
    "asyncpg",
    "matplotlib",
    "opentelemetry.sdk",
    "boto3",
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


def test_a_gateway_without_assistants_or_mcp_never_imports_their_clients(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(tmp_path), json.dumps(NEVER_LOADED)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("LOADED ")]
    assert json.loads(line.removeprefix("LOADED ")) == []
