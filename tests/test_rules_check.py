"""`gateway check`: every problem in every rule file, named by file, line, rule and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway.cli import app
from tests.fixtures import TEST_SOURCES

REPO = Path(__file__).resolve().parents[1]

# One file per kind of mistake; each problem is (file, line, rule, field, words of the message).
BROKEN = {
    "tools.yaml": """\
- name: fine
  on: {source: shop, event: orders/create}
  actions:
    - log.record: {message: "order {{ payload.name }}"}
- name: unknown-tool
  on: {source: shop, event: orders/create}
  actions:
    - jira.create_ticket: {project: OPS, summary: hi}
""",
    "arguments.yaml": """\
- name: wrong-argument
  on: {source: shop}
  actions:
    - jira.create_issue: {project: OPS, summary: hi, title: nope}
- name: missing-argument
  on: {source: shop}
  actions:
    - email.send:
        to: [sales@example.com]
        subject: hi
""",
    "templates.yaml": """\
- name: bad-condition
  on: {source: shop}
  when: "{{ payload.total_price > }}"
  actions:
    - log.record: {message: hi}
- name: bad-argument-template
  on: {source: ci}
  actions:
    - log.record:
        message: "{{ payload.name }"
""",
    "triggers.yaml": """\
- name: on-and-schedule
  on: {source: shop}
  schedule: {cron: "0 8 * * MON"}
  actions:
    - log.record: {message: hi}
""",
    "syntax.yaml": """\
- name: unclosed
  on: {source: shop
  actions: []
""",
}

PROBLEMS = [
    ("tools.yaml", 8, "unknown-tool", "actions.0.jira.create_ticket", "unknown tool"),
    ("arguments.yaml", 4, "wrong-argument", "actions.0.jira.create_issue.title", "no argument"),
    ("arguments.yaml", 8, "missing-argument", "actions.0.email.send", "needs argument 'text'"),
    ("templates.yaml", 3, "bad-condition", "when", "template syntax error"),
    (
        "templates.yaml",
        10,
        "bad-argument-template",
        "actions.0.log.record.message",
        "template syntax error",
    ),
    ("triggers.yaml", 1, "on-and-schedule", "(rule)", "exactly one of `on` or `schedule`"),
]


def write_config(directory: Path, rules: dict[str, str]) -> Path:
    rules_dir = directory / "rules"
    rules_dir.mkdir()
    for name, text in rules.items():
        (rules_dir / name).write_text(text)
    config = directory / "gateway.yaml"
    document = {"store": "sqlite:///gateway.db", "rules": "rules", "sources": TEST_SOURCES}
    config.write_text(yaml.safe_dump(document))
    return config


def check(config: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["check", "--config", str(config)])
    return result.exit_code, result.output.splitlines()


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[str], Path]:
    directory = tmp_path_factory.mktemp("broken")
    code, lines = check(write_config(directory, BROKEN))
    return code, lines, directory / "rules"


def test_broken_rules_fail_the_check_with_exit_status_1(
    broken: tuple[int, list[str], Path],
) -> None:
    code, lines, _ = broken

    assert code == 1
    assert "7 problem(s) in the rules:" in lines


@pytest.mark.parametrize(
    ("file", "line", "rule", "field", "message"), PROBLEMS, ids=[p[2] for p in PROBLEMS]
)
def test_each_problem_is_one_line_naming_file_line_rule_and_field(
    broken: tuple[int, list[str], Path], file: str, line: int, rule: str, field: str, message: str
) -> None:
    _, lines, rules_dir = broken
    prefix = f"  - {rules_dir / file}:{line}: rule {rule}: {field}: "

    [found] = [text for text in lines if text.startswith(prefix)]
    assert message in found


def test_invalid_yaml_is_reported_with_its_file_and_line(
    broken: tuple[int, list[str], Path],
) -> None:
    _, lines, rules_dir = broken

    [found] = [text for text in lines if str(rules_dir / "syntax.yaml") in text]
    assert re.match(rf"  - {re.escape(str(rules_dir / 'syntax.yaml'))}:\d+: invalid YAML", found)


def test_valid_rules_beside_broken_ones_are_not_reported(
    broken: tuple[int, list[str], Path],
) -> None:
    _, lines, _ = broken

    assert not [text for text in lines if "rule fine:" in text]


def test_the_example_config_and_rules_pass_the_check() -> None:
    code, lines = check(REPO / "gateway.yaml")

    assert code == 0, "\n".join(lines)
    # The summary line may wrap on a narrow terminal: read it as one text. It follows the
    # warnings about the example's published test secrets.
    assert re.search(r"(^| )ok: \d+ source\(s\), \d+ rule\(s\)", " ".join(lines))
    assert {p.name for p in (REPO / "rules").glob("*.yaml")} >= {
        "ci.yaml",
        "log.yaml",
        "shop.yaml",
        "stripe.yaml",
    }


ONE_PASS_CONFIG = """\
store: sqlite:///gateway.db
rules: rules
sources:
  shop: {provider: shopify, secret: x}
models:
  default: {api: respones, model: m}
worker: {concurency: 2}
"""

ONE_PASS_RULES = """\
- name: typos
  on: {source: shpo}
  wehn: "{{ payload.total > 1 }}"
  assistant:
    model: defualt
    prompt: hi
    tools: [email.sen]
- name: shadowed
  on: {source: shop}
  actions:
    - log.record: {message: one}
  actions:
    - log.record: {message: two}
"""


@pytest.fixture(scope="module")
def one_pass(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[str], Path]:
    directory = tmp_path_factory.mktemp("one-pass")
    (directory / "rules").mkdir()
    (directory / "rules" / "typos.yaml").write_text(ONE_PASS_RULES)
    (directory / "gateway.yaml").write_text(ONE_PASS_CONFIG)
    result = CliRunner().invoke(app, ["check", "--config", str(directory / "gateway.yaml")])
    return result.exit_code, result.output.splitlines(), directory


ONE_PASS = [
    ("gateway.yaml", 6, "models.default.api: Input should be 'responses' or 'chat'"),
    (
        "gateway.yaml",
        7,
        "worker.concurency: unknown key 'concurency' (did you mean 'concurrency'?)",
    ),
    ("rules/typos.yaml", 2, "rule typos: on.source: no source named 'shpo' (did you mean 'shop'?)"),
    ("rules/typos.yaml", 3, "rule typos: wehn: unknown key 'wehn' (did you mean 'when'?)"),
    (
        "rules/typos.yaml",
        5,
        "rule typos: assistant.model: no profile named 'defualt' under `models:` "
        "(did you mean 'default'?)",
    ),
    (
        "rules/typos.yaml",
        7,
        "rule typos: assistant.tools.0: unknown tool 'email.sen' (did you mean 'email.send'?)",
    ),
    (
        "rules/typos.yaml",
        12,
        "rule shadowed: actions: duplicate key 'actions' (first on line 10, again on line 12)",
    ),
]


@pytest.mark.parametrize(("file", "line", "message"), ONE_PASS, ids=[p[2][:40] for p in ONE_PASS])
def test_one_check_lists_config_and_rule_problems_with_file_and_line(
    one_pass: tuple[int, list[str], Path], file: str, line: int, message: str
) -> None:
    code, lines, directory = one_pass

    assert code == 1
    assert [text for text in lines if text.startswith(f"  - {directory / file}:{line}: {message}")]


def test_problems_of_one_check_are_in_line_order(one_pass: tuple[int, list[str], Path]) -> None:
    _, lines, directory = one_pass
    found = [
        (text.split(":")[0].removeprefix("  - "), int(text.split(":")[1]))
        for text in lines
        if text.startswith("  - ")
    ]

    assert found == sorted(found, key=lambda f: (f[0] != str(directory / "gateway.yaml"), f))
    assert len(found) == len(ONE_PASS)


def test_a_rule_for_a_source_unlike_every_configured_one_is_allowed(tmp_path: Path) -> None:
    """A shared rule set may hold rules for sources this deployment does not receive (deploy/'s
    configs serve the shipped rules with three sources): only a near miss is a typo."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "ci.yaml").write_text(
        "- name: gitlab-failed\n  on: {source: gitlab}\n  actions:\n"
        "    - log.record: {message: failed}\n"
    )
    (tmp_path / "gateway.yaml").write_text(
        "store: sqlite:///gateway.db\nrules: rules\n"
        "sources:\n  shop: {provider: shopify, secret: x}\n"
    )
    result = CliRunner().invoke(app, ["check", "--config", str(tmp_path / "gateway.yaml")])

    assert result.exit_code == 0, result.output
