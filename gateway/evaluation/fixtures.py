"""A rule file's own tests (`tests:`): events read from JSON files beside it, replayed with
the stored ones, each with the expectations its rule's run must meet."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import Config
from gateway.errors import ConfigError
from gateway.rules.expect import Expectation
from gateway.rules.loader import RuleSet
from gateway.store import NewEvent

# Largest fixture file read, in bytes: a fixture is one event.
MAX_FIXTURE_BYTES = 1_000_000


@dataclass(frozen=True)
class Fixture:
    rule: str
    path: str  # as the rule file names it
    event: NewEvent
    expect: Expectation


def load_fixtures(config: Config, rules: RuleSet) -> list[Fixture]:
    """Every rule's `tests:`, read; ConfigError naming each file that cannot be used."""
    fixtures: list[Fixture] = []
    problems: list[str] = []
    for rule in rules.rules:
        folder = rules.files[rule.name].parent if rule.name in rules.files else Path()
        for number, test in enumerate(rule.tests):
            where = f"rule {rule.name}: tests.{number}: {test.event}"
            try:
                event = _event(config, folder / test.event, f"{rule.name}:{number}")
            except (OSError, ValueError) as exc:
                problems.append(f"{where}: {exc}")
                continue
            fixtures.append(Fixture(rule.name, test.event, event, test.expect))
    if problems:
        raise ConfigError(problems)
    return fixtures


def _event(config: Config, path: Path, name: str) -> NewEvent:
    if path.stat().st_size > MAX_FIXTURE_BYTES:
        raise ValueError(f"larger than {MAX_FIXTURE_BYTES} bytes")
    document = json.loads(path.read_bytes())
    if not isinstance(document, dict) or not {"source", "type", "payload"} <= document.keys():
        raise ValueError("a fixture is a JSON object with source, type and payload")
    headers = document.get("headers") or {}
    source = str(document["source"])
    known = config.sources.get(source)
    return NewEvent(
        source=source,
        provider=known.provider if known is not None else source,
        type=str(document["type"]),
        delivery_id=f"fixture:{name}",
        headers={str(k): str(v) for k, v in headers.items()},
        body=json.dumps(document["payload"]).encode(),
        received_at=datetime.now(UTC),
    )
