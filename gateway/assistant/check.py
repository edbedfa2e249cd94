"""What an assistant rule needs from the config: a valid profile under `models:`, a sound policy.

`gateway.ruleset.load_ruleset` runs these beside the rule files' own checks; the rules package
cannot, as it knows nothing of model profiles.
"""

from __future__ import annotations

from gateway.assistant.models import load_profiles
from gateway.assistant.policy import validate_policy
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.rules.loader import Problem, RuleCheck
from gateway.rules.model import Rule
from gateway.tools import TOOLS


def checks(config: Config) -> tuple[list[str], RuleCheck]:
    """Every problem of the `models:` block, and the check of one assistant rule against it."""
    try:
        load_profiles(config.models)
        problems: list[str] = []
    except ConfigError as exc:
        problems = [f"models: {problem}" for problem in exc.problems]
    known = ", ".join(sorted(config.models)) or "none"

    def check(rule: Rule) -> list[Problem]:
        if rule.assistant is None:
            return []
        found: list[Problem] = []
        if rule.assistant.model not in config.models:
            found.append(
                (
                    ("assistant", "model"),
                    f"no profile named {rule.assistant.model!r} under `models:` (defined: {known})",
                )
            )
        for tool, limits in rule.assistant.policy.items():
            if tool.partition(".")[0] in config.mcp:
                continue  # an MCP tool's arguments are known live (`gateway check`)
            found += [
                (("assistant", "policy", tool), problem)
                for problem in validate_policy({tool: limits}, TOOLS)
            ]
        return found

    return problems, check
