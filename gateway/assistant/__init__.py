"""Assistants: model profiles, the backends that speak to models, and the argument policy.

The tool loop itself lives beside these; it sees only `Backend.turn` and `policy.check`.
"""

from gateway.assistant.backends import Backend, Call, ModelError, Turn, make_backend
from gateway.assistant.models import ModelProfile, cost, load_profiles
from gateway.assistant.policy import PolicyDecision, check, validate_policy

__all__ = [
    "Backend",
    "Call",
    "ModelError",
    "ModelProfile",
    "PolicyDecision",
    "Turn",
    "check",
    "cost",
    "load_profiles",
    "make_backend",
    "validate_policy",
]
