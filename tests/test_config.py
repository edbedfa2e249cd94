"""`gateway.yaml` validation: every problem listed with file and line, `${VAR}` from the env."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway import config as config_module
from gateway.errors import ConfigError

BROKEN = """\
store: sqlite:///gateway.db
sources:
  shop: {provider: shopify, secret: x}
  pay:  {provider: paypal, secret: x}
  shop: {provider: shopify, secret: "${SHOP_SECRET}"}
  gen:  {provider: generic, secret: z, mode: carrier-pigeon}
  bare: {provider: github}
worker: {concurrency: 0}
"""


def problems_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config_module.load(path, environ=env or {})
    return caught.value.problems


def test_every_problem_is_listed_with_file_and_line(tmp_path: Path) -> None:
    problems = "\n".join(problems_of(tmp_path, BROKEN))

    assert (
        "gateway.yaml:5: sources.shop: duplicate key 'shop' (first on line 3, again on line 5)"
        in problems
    )
    assert "gateway.yaml:5: sources.shop.secret: environment variable SHOP_SECRET is not set" in (
        problems
    )
    assert "gateway.yaml:4: sources.pay.provider: unknown provider 'paypal'" in problems
    assert "sources.gen: mode:" in problems
    assert "sources.bare: provider github needs `secret` or `secrets`" in problems
    assert "gateway.yaml:8: worker.concurrency" in problems


def test_variables_come_from_the_environment_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        'sources:\n  shop: {provider: shopify, secrets: ["${NEW}", "${OLD:-fallback}"]}\n'
    )

    cfg = config_module.load(path, environ={"NEW": "s3cret"})

    assert cfg.sources["shop"].all_secrets == ["s3cret", "fallback"]


def test_dotenv_beside_the_config_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOTENV_SECRET", raising=False)
    (tmp_path / ".env").write_text("DOTENV_SECRET=from-dotenv\n")
    path = tmp_path / "gateway.yaml"
    path.write_text('sources:\n  shop: {provider: shopify, secret: "${DOTENV_SECRET}"}\n')

    cfg = config_module.load(path)

    assert cfg.sources["shop"].secret == "from-dotenv"
    monkeypatch.delenv("DOTENV_SECRET")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, "sources:\n  shop: {provider: shopify\n")

    assert "gateway.yaml:3" in problem or "gateway.yaml:2" in problem
    assert "invalid YAML" in problem


def test_an_unquoted_variable_inside_braces_is_named_with_its_fix(tmp_path: Path) -> None:
    # `{secret: ${X}}` is how DESIGN.md writes it, but YAML reads `{` as a nested mapping.
    [problem] = problems_of(
        tmp_path, "sources:\n  gh: {provider: github, secret: ${GITHUB_WEBHOOK_SECRET}}\n"
    )

    assert "gateway.yaml:2" in problem
    assert 'so quote it: "${GITHUB_WEBHOOK_SECRET}"' in problem


def test_relative_sqlite_path_is_resolved_beside_the_config(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("store: sqlite:///data/gw.db\n")

    cfg = config_module.load(path, environ={})

    assert cfg.store_url == f"sqlite:///{tmp_path}/data/gw.db"


def test_gateway_check_exits_1_listing_every_problem(tmp_path: Path) -> None:
    (tmp_path / "gateway.yaml").write_text(BROKEN)

    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "--config", str(tmp_path / "gateway.yaml")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        check=False,
    )

    assert result.returncode == 1
    assert "6 problem(s)" in result.stderr
    assert "unknown provider 'paypal'" in result.stderr
    assert "SHOP_SECRET" in result.stderr


def test_gateway_check_accepts_the_example_config() -> None:
    example = Path(__file__).parents[1] / "gateway.yaml"

    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "--config", str(example)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "12 source(s)" in result.stdout


HANDLERS = """\
handlers:
  jira:
    server: https://example.atlassian.net
    sever: https://typo.example
  email: {host: mail.example, port: twenty-five}
  jria: {server: x}
"""


def test_a_typo_in_a_handlers_block_is_named_with_the_closest_setting(tmp_path: Path) -> None:
    problems = "\n".join(problems_of(tmp_path, HANDLERS))

    assert (
        "gateway.yaml:4: handlers.jira.sever: Extra inputs are not permitted "
        "(did you mean 'server'?)" in problems
    )


def test_a_handlers_value_of_the_wrong_type_is_named_at_its_line(tmp_path: Path) -> None:
    problems = "\n".join(problems_of(tmp_path, HANDLERS))

    assert "gateway.yaml:5: handlers.email.port: Input should be a valid integer" in problems


def test_a_block_for_no_known_tool_family_is_a_problem(tmp_path: Path) -> None:
    problems = "\n".join(problems_of(tmp_path, HANDLERS))

    assert "gateway.yaml:6: handlers.jria: unknown tool family 'jria' (known: " in problems
    assert "did you mean 'jira'?" in problems


def test_handlers_blocks_of_the_example_config_are_valid() -> None:
    config = config_module.load(Path(__file__).parents[1] / "gateway.yaml", environ={})

    assert set(config.handlers) == {"jira", "email", "slack", "sql"}


def test_a_duplicate_key_is_refused_naming_both_lines(tmp_path: Path) -> None:
    text = (
        "models:\n  default: {model: gpt-4.1-mini}\n"
        "store: sqlite:///gw.db\n"
        "models:\n  local: {api: chat, model: qwen3}\n"
    )

    [problem] = problems_of(tmp_path, text)

    assert problem == (
        f"{tmp_path / 'gateway.yaml'}:4: models: duplicate key 'models' "
        "(first on line 1, again on line 4): YAML would keep only the last"
    )


def test_an_unknown_key_names_the_closest_valid_one(tmp_path: Path) -> None:
    problems = "\n".join(problems_of(tmp_path, "stor: sqlite:///gw.db\nworker: {concurency: 2}\n"))

    assert "gateway.yaml:1: stor: unknown key 'stor' (did you mean 'store'?)" in problems
    assert (
        "gateway.yaml:2: worker.concurency: unknown key 'concurency' (did you mean 'concurrency'?)"
        in problems
    )


def test_an_unknown_provider_names_the_closest_one(tmp_path: Path) -> None:
    problems = "\n".join(problems_of(tmp_path, "sources:\n  shop: {provider: shopfy, secret: x}\n"))

    assert "unknown provider 'shopfy'" in problems
    assert "(did you mean 'shopify'?)" in problems


def test_problems_are_listed_in_line_order(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, BROKEN)
    lines = [int(p.split(":")[1]) for p in problems]

    assert lines == sorted(lines)
