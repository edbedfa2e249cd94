"""The one way rule files become a `RuleSet` the gateway may run: every check, every problem.

`gateway check`, start-up, every reload (API, dashboard, SIGHUP) and the CLI's rule commands
call `load_ruleset`. It sits above `rules`, `scheduler` and `assistant`, so none of them has to
import another.
"""

from __future__ import annotations

from gateway.assistant.check import checks as assistant_checks
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.rules.loader import RuleSet
from gateway.rules.loader import load as read_rules
from gateway.scheduler.timing import schedule_problems


def load_ruleset(config: Config) -> RuleSet:
    """The rules of `config.rules_dir`, checked against themselves (files, tools, arguments,
    templates, schedules) and against `config` (model profiles, policies).

    Raises `ConfigError` listing every problem; a set with any problem is never returned.
    """
    problems, assistant_rule = assistant_checks(config)
    try:
        rules = read_rules(
            config.rules_dir, checks=[schedule_problems, assistant_rule], foreign=set(config.mcp)
        )
    except ConfigError as exc:
        raise ConfigError([*problems, *exc.problems]) from None
    if problems:
        raise ConfigError(problems)
    return rules
