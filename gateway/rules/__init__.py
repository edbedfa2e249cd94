"""Rules: which events lead to which actions or assistant runs (YAML files in `rules/`)."""

from gateway.rules.loader import RuleSet, load
from gateway.rules.model import Action, Assistant, Rule, Trigger

__all__ = ["Action", "Assistant", "Rule", "RuleSet", "Trigger", "load"]
