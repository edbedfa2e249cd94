"""What a rule is expected to do, checked by `gateway eval` on the calls its runs propose.

Optional under a rule (`expect:`); the live gateway ignores it. See docs/eval.md.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ExpectedCall(BaseModel):
    """A call that must be proposed: its tool, and arguments it must include (a subset)."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)


class Expectation(BaseModel):
    """Checks on one run of the rule, each optional."""

    model_config = ConfigDict(extra="forbid")

    calls: list[ExpectedCall] = Field(default_factory=list)
    no_calls: list[str] = Field(default_factory=list)
    max_cost: float | None = Field(None, ge=0)
    max_steps: int | None = Field(None, ge=0)
    answer_matches: str | None = None

    @field_validator("answer_matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class RuleTest(BaseModel):
    """`tests:` of a rule: an event file (JSON: `source`, `type`, `payload`, optional
    `headers`), relative to the rule file, and what the rule's run for it must do."""

    model_config = ConfigDict(extra="forbid")

    event: str
    expect: Expectation = Field(default_factory=Expectation)
