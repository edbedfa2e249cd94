"""Assistants: model profiles, the backends that speak to models, and the argument policy.

The tool loop itself lives beside these; it sees only `Backend.turn` and `policy.check`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.assistant.backends import Backend, Call, ModelError, Turn, make_backend
    from gateway.assistant.models import ModelProfile, cost, load_profiles
    from gateway.assistant.policy import PolicyDecision, check, validate_policy

# Each name's module, imported on first use: importing `gateway.assistant.models` (profiles,
# cost) must not load the OpenAI client, which a gateway without assistants never uses and
# which costs tens of MB of resident memory (docs/benchmarks.md, memory).
_HOMES = {
    "Backend": "backends",
    "Call": "backends",
    "ModelError": "backends",
    "Turn": "backends",
    "make_backend": "backends",
    "ModelProfile": "models",
    "cost": "models",
    "load_profiles": "models",
    "PolicyDecision": "policy",
    "check": "policy",
    "validate_policy": "policy",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
