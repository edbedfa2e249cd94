"""A separate package adds a tool family and a provider through entry points alone.

`tests/plugin_example/` is installed with pip into a folder of its own, and the gateway runs as
a subprocess with that folder on its path: it finds the plugin through the installed entry-point
metadata, exactly as it would find a package installed beside it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from gateway.store import Run, Step, Store
from tests.process import GatewayProcess

PLUGIN = Path(__file__).parent / "plugin_example"
RULES = """\
- name: greet-partner
  on: {source: partner, event: ping}
  actions:
    - acme.greet: {name: "{{ payload.name }}"}
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the plugin is installed: pip builds it offline with the venv's own setuptools."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "source"
    # Built from a copy: building writes *.egg-info and build/ beside the sources.
    shutil.copytree(PLUGIN, source)
    target = work / "site"
    offline = ["--quiet", "--no-deps", "--no-index", "--no-build-isolation"]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", *offline, "--target", str(target), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert list(target.glob("acme_gateway-*.dist-info/entry_points.txt"))
    return target


@pytest.fixture
def with_plugin(plugin_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment of every gateway process this test starts sees the plugin."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_path), str(Path.cwd())]))
    return plugin_path


def write_config(directory: Path, **overrides: Any) -> Path:
    (directory / "rules").mkdir(exist_ok=True)
    (directory / "rules" / "partner.yaml").write_text(RULES)
    document: dict[str, Any] = {
        "store": f"sqlite:///{directory / 'gateway.db'}",
        "rules": "rules",
        "sources": {"partner": {"provider": "acme", "secret": "partner-secret"}},
        "handlers": {"acme": {"greeting": "Bonjour"}},
        "worker": {"backoff_base": 0.01, "backoff_max": 0.05},
        **overrides,
    }
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def gateway(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_gateway_tools_lists_the_plugins_tool(with_plugin: Path, tmp_path: Path) -> None:
    result = gateway("tools", "--json", "--config", str(write_config(tmp_path)))

    assert result.returncode == 0, result.stderr
    listed = {entry["tool"]: entry for entry in json.loads(result.stdout)}
    assert listed["acme.greet"]["side_effects"] is False
    assert "name" in listed["acme.greet"]["parameters"]["properties"]
    assert "email.send" in listed, "the built-in families are still found beside the plugin"


def test_gateway_check_accepts_the_plugins_source_and_settings(
    with_plugin: Path, tmp_path: Path
) -> None:
    result = gateway("check", "--config", str(write_config(tmp_path)))

    assert result.returncode == 0, result.stdout + result.stderr


def test_gateway_check_names_a_typo_in_the_plugins_settings(
    with_plugin: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path, handlers={"acme": {"greting": "Bonjour"}})

    result = gateway("check", "--config", str(config))

    assert result.returncode == 1
    assert (
        "handlers.acme.greting: Extra inputs are not permitted (did you mean 'greeting'?)"
        in result.stderr
    )


def test_without_the_plugin_its_provider_and_family_are_unknown(tmp_path: Path) -> None:
    result = gateway("check", "--config", str(write_config(tmp_path)))

    assert result.returncode == 1
    assert "sources.partner.provider: unknown provider 'acme'" in result.stderr
    assert "handlers.acme: unknown tool family 'acme'" in result.stderr


def test_an_event_signed_for_the_plugins_provider_runs_the_plugins_tool(
    with_plugin: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    process = GatewayProcess(config).start()
    try:
        for name in ("Ada", "Grace"):
            payload = tmp_path / f"{name}.json"
            payload.write_text(json.dumps({"type": "ping", "name": name}))
            sent = gateway(
                "send", str(payload), "--source", "partner", "--config", str(config),
                "--url", f"{process.url}/hooks/partner",
            )  # fmt: skip
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert "202" in sent.stdout
        forged = httpx2.post(
            f"{process.url}/hooks/partner",
            content=b'{"type": "ping", "name": "Mallory"}',
            headers={"Content-Type": "application/json", "X-Acme-Signature": "00"},
        )
        assert forged.status_code == 401, "the plugin's provider verifies, not only signs"

        runs = wait_for_runs(tmp_path / "gateway.db", 2)
    finally:
        process.stop()

    assert [run.status for run in runs] == ["succeeded", "succeeded"]
    results = [steps[0].result for _, steps in runs_with_steps(tmp_path / "gateway.db", runs)]
    # One client for both calls: it served the first, then the second.
    assert results == [
        {"greeting": "Bonjour, Ada", "calls": 1},
        {"greeting": "Bonjour, Grace", "calls": 2},
    ]


def wait_for_runs(database: Path, count: int, timeout: float = 30) -> list[Run]:
    deadline = time.monotonic() + timeout
    while True:
        runs = read(database, lambda store: store.runs.find(limit=100))
        settled = [r for r in runs if r.status in ("succeeded", "failed", "dead")]
        if len(settled) >= count:
            return sorted(settled, key=lambda r: r.id)
        if time.monotonic() > deadline:
            raise AssertionError(f"runs not settled in {timeout}s: {runs}")
        time.sleep(0.05)


def runs_with_steps(database: Path, runs: list[Run]) -> Iterator[tuple[Run, list[Step]]]:
    for run in runs:
        yield run, list(read(database, lambda store, run_id=run.id: store.steps.of_run(run_id)))


def read(database: Path, query: Any) -> Any:
    async def go() -> Any:
        store = Store(f"sqlite:///{database}")
        try:
            return await query(store)
        finally:
            await store.engine.dispose()
            await store.write_engine.dispose()

    return asyncio.run(go())
