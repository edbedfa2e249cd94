"""Model profiles: the `models:` entries of gateway.yaml, and what a turn costs in dollars.

A profile names a backend (`api: responses | chat`), the model, where it is served and how
patiently to talk to it. Rules refer to profiles by name (`assistant.model: default`).
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import ConfigError

# Placeholder for servers that ignore the key (Ollama, vLLM, LM Studio on this machine): the
# openai client refuses to start without one.
NO_KEY = "not-needed"


class Prices(BaseModel):
    """USD per one million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)


# OpenAI list prices (USD per 1M tokens, standard tier) when this table was written. They change:
# a profile's own `prices: {input: ..., output: ...}` overrides this table, and a model found in
# neither costs 0, which is right for a local model and means "no cost limit" for others
# (`price()` returns None so `gateway check` can say so).
DEFAULT_PRICES: dict[str, Prices] = {
    "gpt-5": Prices(input=1.25, output=10.00),
    "gpt-5-mini": Prices(input=0.25, output=2.00),
    "gpt-5-nano": Prices(input=0.05, output=0.40),
    "gpt-4.1": Prices(input=2.00, output=8.00),
    "gpt-4.1-mini": Prices(input=0.40, output=1.60),
    "gpt-4.1-nano": Prices(input=0.10, output=0.40),
    "gpt-4o": Prices(input=2.50, output=10.00),
    "gpt-4o-mini": Prices(input=0.15, output=0.60),
    "o3": Prices(input=2.00, output=8.00),
    "o4-mini": Prices(input=1.10, output=4.40),
}

# A hosted code_interpreter container session (USD, by memory limit), OpenAI list prices when
# this table was written. Charged once per container, i.e. once per run that uses the tool; a
# run whose container outlives a session is cut by `max_container_minutes` first.
CONTAINER_PRICES: dict[str, float] = {"1g": 0.03, "4g": 0.12, "16g": 0.48, "64g": 1.92}


class ModelProfile(BaseModel):
    """One `models:` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api: Literal["responses", "chat"] = "responses"
    model: str = Field(min_length=1)
    base_url: str | None = None
    # The key is read from this environment variable when the backend is built, never stored.
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = Field(60, gt=0, description="seconds for one request")
    max_retries: int = Field(4, ge=0, description="retries of a 429, 5xx, timeout or lost line")
    temperature: float | None = Field(None, ge=0, le=2)
    prices: Prices | None = None

    @property
    def is_local(self) -> bool:
        """Served on this machine or a private network, where a missing key is normal."""
        if self.base_url is None:
            return False
        host = urlsplit(self.base_url).hostname or ""
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            # A bare name ("ollama") is a service on a compose or cluster network.
            return bool(host) and "." not in host
        return address.is_loopback or address.is_private or address.is_link_local

    def api_key(self, environ: Mapping[str, str] | None = None) -> str:
        """The key from `api_key_env`; a local server may do without one."""
        environ = os.environ if environ is None else environ
        key = environ.get(self.api_key_env)
        if key:
            return key
        if self.is_local:
            return NO_KEY
        raise ConfigError(
            [f"model {self.model}: environment variable {self.api_key_env} is not set"]
        )


def load_profiles(models: Mapping[str, Mapping[str, Any]]) -> dict[str, ModelProfile]:
    """The `models:` block as profiles; raises ConfigError listing every bad entry and field."""
    profiles: dict[str, ModelProfile] = {}
    problems: list[str] = []
    for name, entry in models.items():
        try:
            profiles[name] = ModelProfile.model_validate(entry)
        except ValidationError as error:
            problems.extend(
                f"models.{name}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                if e["loc"]
                else f"models.{name}: {e['msg']}"
                for e in error.errors()
            )
    if problems:
        raise ConfigError(problems)
    return profiles


def price(profile: ModelProfile) -> Prices | None:
    """The profile's prices, else the table's for its model (a dated snapshot matches too)."""
    if profile.prices is not None:
        return profile.prices
    model = profile.model.lower()
    # Longest prefix, so "gpt-4.1-mini-2025-04-14" is priced as gpt-4.1-mini, not gpt-4.1.
    for known in sorted(DEFAULT_PRICES, key=len, reverse=True):
        if model == known or model.startswith(known + "-"):
            return DEFAULT_PRICES[known]
    return None


def cost(profile: ModelProfile, input_tokens: int, output_tokens: int) -> float:
    """What these tokens cost in USD; 0 for a model with no known price."""
    prices = price(profile)
    if prices is None:
        return 0.0
    return (input_tokens * prices.input + output_tokens * prices.output) / 1_000_000


def dollars(value: float | None) -> str:
    """Dollars with the digits that matter: `$0.000042`, `$0.0123`, `$0.50`, `$1.50`, `$0`."""
    if not value:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    # Three significant digits: a cent's fraction is what a small model turn costs.
    places = min(10, 2 - math.floor(math.log10(abs(value))))
    whole, _, fraction = f"{value:.{places}f}".partition(".")
    return f"${whole}.{fraction[:2]}{fraction[2:].rstrip('0')}"
