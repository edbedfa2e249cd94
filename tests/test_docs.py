"""The docs check: every runnable snippet in README.md and docs/*.md works, every link resolves.

Fenced blocks are marked by their info string: `yaml rules` (a rule list the loader and
`gateway check` accept), `yaml config` (a gateway.yaml fragment that validates), `python tool`
(a custom tool module that registers), `sh runnable` (offline `gateway` commands, run in a
temporary copy of the example config and rules).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gateway import config as config_module
from gateway.assistant.models import load_profiles
from gateway.assistant.policy import validate_policy
from gateway.cli import app
from gateway.rules import loader
from gateway.tools import TOOLS, Toolbox

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(
    r"^(?P<fence>```+|~~~+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
REFERENCE = re.compile(r"^\[[^\]\n]+\]:\s+(?P<target>\S+)", re.M)
# Commands a `sh runnable` block may run: offline, and harmless in a temporary copy.
SAFE_COMMANDS = re.compile(
    r"^gateway (--help|version|check|schedules( .*)?|db (upgrade|current)|events( .*)?"
    r"|runs( .*)?|[a-z]+( [a-z]+)? --help)$"
)
SECRET_LOOKING = "dGhpc19pc19hX3Rlc3Rfa2V5"  # base64: a valid value for every provider's secret


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    kind: str
    body: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            info = match.group("info").strip()
            found.append(Block(path, line, info, match.group("body")))
    return found


BLOCKS = _blocks()


def _marked(kind: str) -> list[Any]:
    return [pytest.param(b, id=b.id) for b in BLOCKS if b.kind == kind]


# --------------------------------------------------------------------------- the markers


def test_the_docs_have_runnable_examples_of_each_kind() -> None:
    kinds = {b.kind for b in BLOCKS}
    assert {"yaml rules", "yaml config", "sh runnable", "python tool"} <= kinds


@pytest.mark.parametrize("path", [p for p in DOCS if p.parent.name == "docs"], ids=lambda p: p.name)
def test_every_yaml_block_in_the_docs_says_whether_it_is_checked(path: Path) -> None:
    """A bare ```yaml block would silently escape the check: say `rules`, `config` or why not."""
    bare = [b.id for b in BLOCKS if b.path == path and b.kind == "yaml"]
    assert not bare, f"mark these blocks `yaml rules`, `yaml config` or `yaml <what>`: {bare}"


# --------------------------------------------------------------------------- rules


def _write_config(directory: Path, fragment: dict[str, Any] | None = None) -> Path:
    """The repository's gateway.yaml, its rules dir moved to `directory`, with `fragment` merged."""
    document = yaml.safe_load((REPO / "gateway.yaml").read_text(encoding="utf-8"))
    document["rules"] = "rules"
    document["store"] = "sqlite:///gateway.db"
    for key, value in (fragment or {}).items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    (directory / "rules").mkdir(exist_ok=True)
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _environ(text: str) -> dict[str, str]:
    """A value for every `${VAR}` the text names, so a fragment validates without real secrets."""
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    return {name: SECRET_LOOKING for name in names}


@pytest.mark.parametrize("block", _marked("yaml rules"))
def test_rules_example_loads_and_passes_gateway_check(block: Block, tmp_path: Path) -> None:
    config = _write_config(tmp_path)
    (tmp_path / "rules" / "example.yaml").write_text(block.body, encoding="utf-8")

    rules = loader.load(tmp_path / "rules")
    assert rules.rules, f"{block.id}: no rule in the block"
    for rule in rules.rules:
        if rule.assistant is not None:
            allowed = {name: TOOLS[name] for name in rule.assistant.tools}
            assert validate_policy(rule.assistant.policy, allowed) == [], block.id
            profiles = yaml.safe_load((REPO / "gateway.yaml").read_text())["models"]
            assert rule.assistant.model in profiles, (
                f"{block.id}: no profile {rule.assistant.model}"
            )

    result = CliRunner().invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 0, f"{block.id}:\n{result.output}"


def test_the_repository_rules_pass_gateway_check() -> None:
    result = CliRunner().invoke(app, ["check", "--config", str(REPO / "gateway.yaml")])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output


def test_the_repository_rules_policies_and_models_are_sound() -> None:
    """What `gateway check` does not look at yet: policies and model profile names."""
    rules = loader.load(REPO / "rules")
    profiles = load_profiles(yaml.safe_load((REPO / "gateway.yaml").read_text())["models"])
    for rule in rules.rules:
        if rule.assistant is None:
            continue
        assert rule.assistant.model in profiles, rule.name
        allowed = {name: TOOLS[name] for name in rule.assistant.tools}
        assert validate_policy(rule.assistant.policy, allowed) == [], rule.name


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("block", _marked("yaml config"))
def test_config_example_validates(block: Block, tmp_path: Path) -> None:
    fragment = yaml.safe_load(block.body)
    assert isinstance(fragment, dict), f"{block.id}: a config fragment is a mapping"
    path = _write_config(tmp_path, fragment)
    # Only the fragment's variables are set: the example config's own fall back to defaults.
    config = config_module.load(path, environ=_environ(block.body))

    load_profiles(config.models)  # `gateway check` does not validate profiles yet
    for name in fragment.get("sources", {}):
        assert name in config.sources, block.id


# --------------------------------------------------------------------------- custom tools


@pytest.mark.parametrize("block", _marked("python tool"))
def test_custom_tool_example_registers_a_callable_tool(block: Block) -> None:
    before = set(TOOLS)
    module = types.ModuleType("docs_example_tool")
    try:
        exec(compile(block.body, block.id, "exec"), module.__dict__)  # noqa: S102
        added = set(TOOLS) - before
        assert len(added) == 1, f"{block.id}: expected one new tool, got {sorted(added)}"
        tool = TOOLS[added.pop()]
        assert tool.definition()["parameters"]["additionalProperties"] is False
        arguments = tool.validate({"incident": "INC-7", "text": "disk full"})
        recover = tool.recover_function

        async def call_then_recover() -> tuple[Any, Any]:
            async with Toolbox({tool.family: {"url": "https://pager.example"}}) as toolbox:
                assert toolbox.definition(tool)["description"]
                context = toolbox.context(tool, key="1.0.abcd")
                made = await tool.call(context, arguments)
                return made, (await recover(context, arguments) if recover else made)

        result, found = asyncio.run(call_then_recover())
        assert result["incident"] == "INC-7"
        assert found == result, "recover finds the effect of the first call"
    finally:
        for name in set(TOOLS) - before:
            TOOLS.forget(name)


# --------------------------------------------------------------------------- commands


def _commands() -> list[Any]:
    found = []
    for block in BLOCKS:
        if block.kind != "sh runnable":
            continue
        for offset, raw in enumerate(block.body.splitlines(), start=1):
            command = raw.split("#", 1)[0].strip()
            if command:
                found.append(pytest.param(command, id=f"{block.id}+{offset}: {command}"))
    return found


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the example config and rules, where commands may create a store."""
    directory = tmp_path_factory.mktemp("docs-sandbox")
    shutil.copy(REPO / "gateway.yaml", directory / "gateway.yaml")
    shutil.copytree(REPO / "rules", directory / "rules")
    yield directory


@pytest.mark.parametrize("command", _commands())
def test_runnable_command_succeeds(command: str, sandbox: Path) -> None:
    assert SAFE_COMMANDS.match(command), f"not an offline-safe command: {command!r}"
    gateway = Path(sys.executable).with_name("gateway")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}
    result = subprocess.run(
        [str(gateway), *command.split()[1:]],
        cwd=sandbox,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"


# --------------------------------------------------------------------------- links


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*|_(?=\w)|(?<=\w)_", lambda m: "_" if m.group(0) == "_" else "", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*?)\s*#*$", text, re.M)}


def _links() -> list[Any]:
    found = []
    for path in DOCS:
        text = FENCE.sub("", path.read_text(encoding="utf-8"))
        targets = [m.group("target") for m in LINK.finditer(text)]
        targets += [m.group("target") for m in REFERENCE.finditer(text)]
        for target in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            found.append(pytest.param(path, target, id=f"{path.name}->{target}"))
    return found


@pytest.mark.parametrize(("source", "target"), _links())
def test_relative_link_points_to_an_existing_file(source: Path, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    destination = (source.parent / file_part).resolve() if file_part else source
    assert destination.exists(), f"{source.name}: broken link {target}"
    if anchor and destination.suffix == ".md":
        assert anchor in _anchors(destination), f"{source.name}: no heading for #{anchor}"


def test_the_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    import gateway

    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert gateway.__version__ == version("webhook-gateway")
    assert f"## [{gateway.__version__}]" in changelog


def test_snippet_extraction_sees_indented_code_as_text() -> None:
    sample = textwrap.dedent(
        """\
        ```yaml rules
        - name: x
        ```
        """
    )
    assert [m.group("info") for m in FENCE.finditer(sample)] == ["yaml rules"]


def test_builtin_tools_are_loaded() -> None:
    assert "email.send" in TOOLS


# ------------------------------------------------------------------ the two set-up commands


def _setup_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return [m.group("body").strip() for m in FENCE.finditer(section)]


def test_readme_setup_commands_make_their_own_virtualenv() -> None:
    """On a stock Debian or Ubuntu, a bare `pip install` is refused (PEP 668, externally managed):
    each set-up command creates and activates a virtualenv before it installs anything."""
    commands = _setup_commands()
    assert len(commands) == 2, commands
    for command in commands:
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install"), (
            command
        )


def test_ci_runs_the_readme_test_command_exactly() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert _setup_commands()[1] in ci
