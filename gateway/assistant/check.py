"""What an assistant rule needs from the config: a valid profile under `models:`, a sound policy.

`gateway.ruleset.load_ruleset` runs these beside the rule files' own checks; the rules package
cannot, as it knows nothing of model profiles.
"""

from __future__ import annotations

from pydantic import ValidationError

from gateway import problems as wording
from gateway.assistant.models import ModelProfile
from gateway.assistant.policy import validate_policy
from gateway.config import Config
from gateway.rules.loader import Problem, RuleCheck
from gateway.rules.model import KNOWLEDGE, Rule
from gateway.tools import TOOLS


def checks(config: Config) -> tuple[list[str], RuleCheck]:
    """Every problem of the `models:` block (at its line in the config file), and the check of
    one assistant rule against it."""
    problems: list[str] = []
    for name, entry in config.models.items():
        try:
            ModelProfile.model_validate(entry)
        except ValidationError as error:
            for e in error.errors():
                at = ("models", name, *e["loc"])
                field = ".".join(str(p) for p in at)
                problems.append(f"{config.where(at)}: {field}: {wording.message(ModelProfile, e)}")
    known = ", ".join(sorted(config.models)) or "none"

    def check(rule: Rule) -> list[Problem]:
        if rule.assistant is None:
            return []
        found: list[Problem] = []
        if rule.assistant.model not in config.models:
            found.append(
                (
                    ("assistant", "model"),
                    f"no profile named {rule.assistant.model!r} under `models:`"
                    f"{wording.did_you_mean(rule.assistant.model, config.models)} "
                    f"(defined: {known})",
                )
            )
        context = rule.assistant.context
        if context is not None and context.knowledge not in config.knowledge:
            collections = ", ".join(sorted(config.knowledge)) or "none"
            found.append(
                (
                    ("assistant", "context", "knowledge"),
                    f"no collection named {context.knowledge!r} under `knowledge:` "
                    f"(defined: {collections})",
                )
            )
        for name in rule.assistant.file_search:
            collection = config.knowledge.get(name)
            if collection is None or not collection.hosted:
                found.append(
                    (
                        ("assistant", "file_search"),
                        f"{name!r} is not a hosted collection under `knowledge:`",
                    )
                )
        if rule.assistant.file_search and not on_responses(config, rule.assistant.model):
            found.append(
                (
                    ("assistant", "file_search"),
                    f"profile {rule.assistant.model!r} is not on the Responses API",
                )
            )
        found += _code_interpreter(rule, config)
        for tool, limits in rule.assistant.policy.items():
            if tool.partition(".")[0] in config.mcp:
                continue  # an MCP tool's arguments are known live (`gateway check`)
            found += [
                (("assistant", "policy", tool), problem)
                for problem in validate_policy({tool: limits}, TOOLS)
            ]
        return found

    return problems, check


def _code_interpreter(rule: Rule, config: Config) -> list[Problem]:
    """A hosted code interpreter needs a Responses profile and known knowledge collections."""
    assert rule.assistant is not None
    options = rule.assistant.code_interpreter
    if options is None:
        return []
    found: list[Problem] = []
    name = rule.assistant.model
    if not on_responses(config, name):
        api = (config.models.get(name) or {}).get("api")
        found.append(
            (
                ("assistant", "tools"),
                f"code_interpreter is a hosted Responses API tool: profile {name!r} is on "
                f"`api: {api}`",
            )
        )
    for entry in options.files:
        collection = entry.removeprefix(KNOWLEDGE)
        if entry.startswith(KNOWLEDGE) and collection not in config.knowledge:
            found.append(
                (
                    ("assistant", "code_interpreter", "files"),
                    f"no collection named {collection!r} under `knowledge:`",
                )
            )
    return found


def on_responses(config: Config, profile: str) -> bool:
    """Whether profile `profile` is on the Responses API, where hosted tools exist (an unknown
    profile is reported on its own)."""
    return bool((config.models.get(profile) or {}).get("api", "responses") == "responses")
