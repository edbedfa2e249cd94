"""`gateway serve` says where it listens and what is on, and refuses clearly, in one line and
without a traceback, what would fail at start-up (a second worker on one SQLite file, a store
in a folder that does not exist)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.fixtures import TEST_SOURCES
from tests.process import GatewayProcess, free_port

RULES = """
- name: log-orders
  on: {source: shop}
  actions:
    - log.record: {message: "order"}
- name: nightly
  schedule: {cron: "0 3 * * *"}
  actions:
    - log.record: {message: "night"}
"""


def write_config(tmp_path: Path, **overrides: object) -> Path:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "rules.yaml").write_text(RULES)
    document = {
        "store": f"sqlite:///{tmp_path / 'gateway.db'}",
        "sources": {"shop": TEST_SOURCES["shop"]},
        "rules": "rules",
        **overrides,
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def serve_once(config: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)]
    return subprocess.run(
        [*command, "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_prints_where_it_listens_and_what_is_on(tmp_path: Path) -> None:
    process = GatewayProcess(write_config(tmp_path)).start()
    try:
        output = process.output()
    finally:
        process.stop()

    assert f"serving on http://127.0.0.1:{process.port} (roles: ingest, scheduler, worker)" in (
        output
    )
    assert f"store: sqlite:///{tmp_path / 'gateway.db'}" in output
    assert "rules: 2 from" in output and "(1 on events, 1 scheduled)" in output
    assert "sources: shop (POST /hooks/SOURCE)" in output
    assert "dashboard /ui: off (no admin_token in the config)" in output
    assert "admin API /api: off (no admin_token in the config)" in output


def test_a_second_worker_on_one_sqlite_file_is_refused_in_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    first = GatewayProcess(config).start()
    try:
        second = serve_once(config)
    finally:
        first.stop()

    assert second.returncode == 1
    assert "Traceback" not in second.stderr + second.stdout
    [line] = [text for text in second.stderr.splitlines() if "not starting" in text]
    assert "another gateway worker" in line and "--role ingest" in line


def test_a_store_in_a_missing_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, store=f"sqlite:///{tmp_path / 'nowhere' / 'gw.db'}")

    result = serve_once(config)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert f"the folder {tmp_path / 'nowhere'} does not exist" in result.stderr
