"""`gateway send --new-id`: the same fixture, sent twice, is two events, for every provider."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway import cli
from tests.fixtures import FOLDERS, ROOT, requires_fixtures
from tests.live import live_gateway

pytestmark = requires_fixtures

RULES = """
- name: log-all
  on: {source: "*"}
  actions:
    - log.record: {message: "{{ event.type }}"}
"""


def first_fixture(folder: str) -> Path:
    return sorted(
        p for p in (ROOT / folder).glob("*.json") if not p.name.endswith(".headers.json")
    )[0]


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_each_send_with_new_id_is_a_new_event(folder: str, tmp_path: Path) -> None:
    source = FOLDERS[folder][0]
    with live_gateway(tmp_path, RULES) as gw:

        def send(*extra: str) -> str:
            result = CliRunner().invoke(
                cli.app,
                ["send", str(first_fixture(folder)), "--source", source,
                 "--url", f"{gw.url}/hooks/{source}", "-c", str(tmp_path / "gateway.yaml"), *extra],
            )  # fmt: skip
            assert result.exit_code == 0, result.output
            return result.output

        first, again, new = send(), send(), send("--new-id")
        newer = send("--new-id")

    assert '"duplicate":false' in first
    assert '"duplicate":true' in again
    assert '"duplicate":false' in new and '"duplicate":false' in newer
