"""The CLI's output read by a program or a person: full width when piped, results alone on
stdout, help that names arguments as the README does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures import TEST_SOURCES

LONG_RULE = "log-every-order-from-the-shop-with-a-name-longer-than-any-column"
RULES = f"""
- name: {LONG_RULE}
  on: {{source: shop}}
  actions:
    - log.record: {{message: "order"}}
- name: nightly
  schedule: {{cron: "0 3 * * *"}}
  actions:
    - log.record: {{message: "night"}}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text(RULES)
    # A long store path: the `ok` line of `check` is longer than 80 columns.
    folder = tmp_path / ("a-folder-with-a-long-name-" * 3)
    folder.mkdir()
    document = {
        "store": f"sqlite:///{folder / 'gateway.db'}",
        "sources": {"shop": TEST_SOURCES["shop"]},
        "rules": str(tmp_path / "rules"),
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def gateway(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a pipe sees it: no terminal, no COLUMNS."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_fire_prints_only_its_result_on_stdout(config: Path) -> None:
    result = gateway("fire", "nightly", "-c", str(config))

    assert result.returncode == 0, result.stderr
    assert result.stdout == "rule nightly fired: event 1\n"


def test_tables_piped_to_a_file_are_not_cut(config: Path) -> None:
    assert gateway("fire", "nightly", "-c", str(config)).returncode == 0

    listed = gateway("schedules", "-c", str(config))
    checked = gateway("check", "-c", str(config))

    assert listed.returncode == 0, listed.stderr
    assert "…" not in listed.stdout
    ok = [line for line in checked.stdout.splitlines() if line.startswith("ok: ")]
    assert len(ok) == 1 and ok[0].endswith("gateway.db"), checked.stdout


def test_help_names_arguments_as_the_readme_does() -> None:
    result = gateway("run", "--help")

    assert " run [OPTIONS] RUN" in result.stdout
    assert "{run_id}" not in result.stdout
    assert "<bool>" not in result.stdout


def test_colon_names_are_printed_as_they_are_not_as_emoji() -> None:
    """`:name:` in an event type, a rule or a URL stays text (rich would draw an emoji)."""
    from gateway import terminal

    console = terminal.console()
    with console.capture() as captured:
        console.print("event shop:smile: rule :thumbs_up: http://h:8000/x:y:")
    assert captured.get() == "event shop:smile: rule :thumbs_up: http://h:8000/x:y:\n"
