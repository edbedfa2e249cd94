"""The cost guard of `gateway eval`: what the candidate's model calls will cost, estimated
before any is made from the tokens the live runs of the same rules used."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.assistant.models import cost, load_profiles
from gateway.config import Config
from gateway.rules.loader import RuleSet
from gateway.store import Run


def estimate(config: Config, rules: RuleSet, live_runs: Iterable[Run]) -> float:
    """USD: each live run's tokens priced at the profile of the candidate assistant rule of
    the same name (a live run whose rule the candidate lacks, or has without an assistant,
    is not counted)."""
    profiles = load_profiles(config.models)
    total = 0.0
    for run in live_runs:
        rule = rules.by_name.get(run.rule)
        if rule is None or rule.assistant is None:
            continue
        profile = profiles.get(rule.assistant.model)
        if profile is not None:
            total += cost(profile, run.input_tokens, run.output_tokens)
    return total
