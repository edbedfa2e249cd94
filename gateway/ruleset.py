"""The one way rule files become a `RuleSet` the gateway may run: every check, every problem.

`gateway check`, start-up, every reload (API, dashboard, SIGHUP) and the CLI's rule commands
call `load_ruleset`. It sits above `rules`, `scheduler` and `assistant`, so none of them has to
import another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway import problems as wording
from gateway.assistant.check import checks as assistant_checks
from gateway.config import Config
from gateway.config import read as read_config
from gateway.errors import ConfigError
from gateway.rules.loader import Problem, RuleCheck, RuleSet
from gateway.rules.loader import load as read_rules
from gateway.rules.model import Rule
from gateway.scheduler.timing import schedule_problems


def load_ruleset(config: Config) -> RuleSet:
    """The rules of `config.rules_dir`, checked against themselves (files, tools, arguments,
    templates, schedules) and against `config` (model profiles, policies, sources).

    Raises `ConfigError` listing every problem; a set with any problem is never returned.
    """
    rules, in_config, in_rules = _read(config)
    if rules is None or in_config:
        raise ConfigError(wording.in_line_order([*in_config, *in_rules]))
    return rules


@dataclass
class Checked:
    """What `gateway check` found: the config (its valid parts), the rules if all are valid,
    and every problem of each, in line order."""

    config: Config
    rules: RuleSet | None
    in_config: list[str]
    in_rules: list[str]


def check(path: str | Path | None) -> Checked:
    """The config and its rules, checked in one pass: a problem in the config does not hide
    those of the rules. Raises `ConfigError` only when the config cannot be read at all."""
    config, in_config = read_config(path)
    rules, in_profiles, in_rules = _read(config)
    return Checked(config, rules, wording.in_line_order([*in_config, *in_profiles]), in_rules)


def _read(config: Config) -> tuple[RuleSet | None, list[str], list[str]]:
    in_config, assistant_rule = assistant_checks(config)
    try:
        rules = read_rules(
            config.rules_dir,
            checks=[schedule_problems, assistant_rule, source_check(config)],
            foreign=set(config.mcp),
        )
    except ConfigError as exc:
        return None, in_config, exc.problems
    return rules, in_config, []


def source_check(config: Config) -> RuleCheck:
    """A rule's `on.source`, when it is a plain name close to a configured source's but not one
    (`shpo` beside `shop`), is a typo that would make a rule that never runs. A name unlike
    every configured one is allowed: a shared rule set may hold rules for sources this
    deployment does not receive. A glob (`*`, `shop-*`) may match none."""

    def check(rule: Rule) -> list[Problem]:
        source = rule.trigger.source if rule.trigger is not None else "*"
        if not config.sources or any(c in source for c in "*?[") or source in config.sources:
            return []
        hint = wording.did_you_mean(source, config.sources)
        if not hint:
            return []
        known = ", ".join(sorted(config.sources))
        return [(("on", "source"), f"no source named {source!r}{hint} (defined: {known})")]

    return check
