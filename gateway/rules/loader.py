"""Read `rules/*.yaml` into a `RuleSet`, or fail naming file, line, rule and field.

Checks what pydantic cannot: unique names, known tools, argument names, template syntax.
`gateway.ruleset.load_ruleset` adds the checks that need the config or the scheduler; use that.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway import problems as wording
from gateway import yamlfile
from gateway.errors import ConfigError
from gateway.rules import templates
from gateway.rules.model import Rule
from gateway.tools import TOOLS

# Where in a rule a problem is (`("assistant", "model")`), and what it is.
Problem = tuple[tuple[str | int, ...], str]
# A check of one parsed rule that needs more than the rule (the config's model profiles).
RuleCheck = Callable[[Rule], Iterable[Problem]]


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_name = {rule.name: rule for rule in self.rules}

    def matching(self, source: str, event_type: str) -> list[Rule]:
        """Enabled event rules whose `on` matches, in file order (`when` is checked later)."""
        return [
            r
            for r in self.rules
            if r.enabled and r.trigger is not None and r.trigger.matches(source, event_type)
        ]

    @property
    def scheduled(self) -> list[Rule]:
        return [r for r in self.rules if r.enabled and r.schedule is not None]


def load(
    directory: Path, checks: Sequence[RuleCheck] = (), foreign: Collection[str] = ()
) -> RuleSet:
    """Every `*.yaml`/`*.yml` file in `directory` (sorted), each rule also put through `checks`;
    `ConfigError` lists all problems. `foreign` names the MCP servers, whose tools
    (`SERVER.TOOL`, `SERVER.*`) are only known live: `gateway check` compares those."""
    problems: list[str] = []
    rules: list[Rule] = []
    files: dict[str, Path] = {}
    if not directory.is_dir():
        raise ConfigError([f"{directory}: rules directory not found"])
    paths = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    for path in paths:
        try:
            doc = yamlfile.load(path)
        except yamlfile.YamlSyntaxError as exc:
            problems.append(str(exc))
            continue
        problems += [_duplicate(doc, d) for d in doc.duplicates]
        if doc.data is None:
            continue
        if not isinstance(doc.data, list):
            problems.append(f"{doc.where(())}: a rule file is a list of rules (`- name: ...`)")
            continue
        for index, raw in enumerate(doc.data):
            rule = _parse(doc, index, raw, checks, problems, foreign)
            if rule is None:
                continue
            if rule.name in files:
                problems.append(
                    f"{doc.where((index, 'name'))}: rule {rule.name}: name already used in "
                    f"{files[rule.name]}"
                )
                continue
            files[rule.name] = path
            rules.append(rule)
    if problems:
        raise ConfigError(wording.in_line_order(problems))
    return RuleSet(rules, files)


def _parse(
    doc: yamlfile.Document,
    index: int,
    raw: Any,
    checks: Sequence[RuleCheck],
    problems: list[str],
    foreign: Collection[str] = (),
) -> Rule | None:
    name = raw.get("name", f"#{index + 1}") if isinstance(raw, dict) else f"#{index + 1}"
    before = len(problems)
    try:
        valid: Rule | None = Rule.model_validate(raw)
    except ValidationError as exc:
        valid = None
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not isinstance(p, str) or not p.startswith("["))
            where = doc.where((index, *loc))
            field_name = ".".join(str(p) for p in loc) or "(rule)"
            problems.append(f"{where}: rule {name}: {field_name}: {wording.message(Rule, err)}")
    # An invalid rule's valid parts are checked too: one pass of `check` lists every problem.
    rule = valid or wording.partial(Rule, raw)
    if rule is None:
        return None
    found = _semantic_problems(rule, foreign)
    for check in checks:
        found += check(rule)
    for at, message in found:
        problems.append(
            f"{doc.where((index, *at))}: rule {name}: {'.'.join(map(str, at))}: {message}"
        )
    return valid if len(problems) == before else None


def _semantic_problems(rule: Rule, foreign: Collection[str] = ()) -> list[Problem]:
    found: list[Problem] = []

    def served(name: str) -> bool:
        return name.partition(".")[0] in foreign and "." in name

    def template(at: tuple[str | int, ...], value: Any) -> None:
        if isinstance(value, str):
            if ("{{" in value or "{%" in value) and (error := templates.check(value)):
                found.append((at, error))
        elif isinstance(value, dict):
            for key, item in value.items():
                template((*at, key), item)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                template((*at, i), item)

    for key in ("when", "order_by"):
        text = getattr(rule, key)
        if text is not None and (error := templates.check(text)):
            found.append(((key,), error))
    for position, action in enumerate(rule.actions):
        at: tuple[str | int, ...] = ("actions", position)
        if served(action.tool) and not action.tool.endswith(".*"):
            template((*at, action.tool), action.arguments)
            continue
        tool = TOOLS.get(action.tool)
        if tool is None:
            found.append(((*at, action.tool), _unknown_tool(action.tool)))
            continue
        # Arguments go by their schema names (an alias such as http.request's `json`).
        fields = {info.alias or name: info for name, info in tool.arguments.model_fields.items()}
        for argument in action.arguments:
            if argument not in fields:
                found.append(
                    (
                        (*at, action.tool, argument),
                        f"{action.tool} has no argument {argument!r} "
                        f"(it takes {', '.join(fields)})",
                    )
                )
        for argument, info in fields.items():
            if info.is_required() and argument not in action.arguments:
                found.append(((*at, action.tool), f"{action.tool} needs argument {argument!r}"))
        # A value written as is must already be valid (an issue key, a number in range).
        literal = {
            k: v
            for k, v in action.arguments.items()
            if k in fields and not templates.is_template(v)
        }
        for argument, problem in tool.problems(literal).items():
            found.append(((*at, action.tool, argument), problem))
        template((*at, action.tool), action.arguments)
        if action.when and (error := templates.check(action.when)):
            found.append(((*at, "when"), error))
    if rule.assistant is not None:
        for key in ("prompt", "instructions", "thread"):
            template(("assistant", key), getattr(rule.assistant, key))
        for i, name in enumerate(rule.assistant.tools):
            if name not in TOOLS and not served(name):
                found.append((("assistant", "tools", i), _unknown_tool(name)))
        for name in rule.assistant.policy:
            wildcard = name.partition(".")[0] + ".*"
            if name not in rule.assistant.tools and not (
                served(name) and wildcard in rule.assistant.tools
            ):
                found.append(
                    (
                        ("assistant", "policy", name),
                        f"policy for {name!r}, which is not in the tools allowlist"
                        + wording.did_you_mean(name, rule.assistant.tools),
                    )
                )
    return found


def _unknown_tool(name: str) -> str:
    known = ", ".join(sorted(TOOLS))
    return f"unknown tool {name!r}{wording.did_you_mean(name, TOOLS)} (known: {known})"


def _duplicate(doc: yamlfile.Document, duplicate: yamlfile.Duplicate) -> str:
    index, *at = duplicate.location
    rule = doc.data[index] if isinstance(doc.data, list) and isinstance(index, int) else None
    name = rule.get("name") if isinstance(rule, dict) else None
    where = f"rule {name or f'#{index + 1}'}: " if isinstance(index, int) else ""
    return f"{doc.path}:{duplicate.line}: {where}{'.'.join(map(str, at))}: {duplicate.message}"
