"""What `gateway check` and startup verify of assistant rules beyond their own file.

A rule's model must name a valid profile under `models:`, and its policy must name tools and
arguments that exist; the rules loader alone cannot know the config's profiles.
"""

from __future__ import annotations

from gateway.assistant.models import load_profiles
from gateway.assistant.policy import validate_policy
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.rules.loader import RuleSet
from gateway.tools import TOOLS, load_builtin


def problems(config: Config, rules: RuleSet) -> list[str]:
    """Every problem with the model profiles and the assistant rules, one line each."""
    load_builtin()
    found: list[str] = []
    try:
        profiles = load_profiles(config.models)
    except ConfigError as exc:
        found += [f"models: {problem}" for problem in exc.problems]
        profiles = {}
    for rule in rules.rules:
        if rule.assistant is None:
            continue
        where = f"{rules.files.get(rule.name, config.rules_dir)}: rule {rule.name}"
        if rule.assistant.model not in profiles and rule.assistant.model not in config.models:
            known = ", ".join(sorted(config.models)) or "none"
            found.append(
                f"{where}: assistant.model: no profile named {rule.assistant.model!r} "
                f"under `models:` (defined: {known})"
            )
        found += [
            f"{where}: assistant.policy: {problem}"
            for problem in validate_policy(rule.assistant.policy, TOOLS)
        ]
    return found
