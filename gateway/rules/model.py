"""What a rule file says, as pydantic models: triggers, conditions, actions, assistants.

See docs/rules.md for the reference; `gateway.rules.loader` turns files into these.
"""

from __future__ import annotations

import fnmatch
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gateway.config import MAX_PASSAGES, Budget
from gateway.retrying import RetryOverride
from gateway.rules.expect import Expectation, RuleTest


class Trigger(BaseModel):
    """`on:` which events a rule sees; `*` globs in both fields."""

    model_config = ConfigDict(extra="forbid")

    source: str = "*"
    event: str = "*"

    def matches(self, source: str, event_type: str) -> bool:
        return fnmatch.fnmatchcase(source, self.source) and fnmatch.fnmatchcase(
            event_type, self.event
        )


class Action(BaseModel):
    """One tool call: `{tool.name: {arguments}}`, with an optional `when` and `as` name."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    when: str | None = None
    name: str | None = Field(None, alias="as")

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, value: Any) -> Any:
        if not isinstance(value, dict) or "tool" in value:
            return value
        extras = {k: value[k] for k in ("when", "as") if k in value}
        calls = [k for k in value if k not in ("when", "as")]
        if len(calls) != 1:
            raise ValueError(
                "an action is one `tool.name: {arguments}` mapping (plus optional when/as), "
                f"got keys {sorted(value)}"
            )
        arguments = value[calls[0]]
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ValueError(f"the arguments of {calls[0]} must be a mapping")
        return {"tool": calls[0], "arguments": arguments, **extras}


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(10, ge=1)
    tokens: int | None = Field(None, ge=1)
    cost: float | None = Field(None, gt=0)
    seconds: float | None = Field(None, gt=0)
    invalid_calls: int = Field(3, ge=0)


def _approve_is_a_boolean(limits: dict[str, Any]) -> dict[str, Any]:
    # Only `approve: true` makes a call wait (gateway.assistant.policy): a quoted "true" would
    # silently let it through, so no rule holding anything but a YAML boolean can exist.
    approve = limits.get("approve", False)
    if not isinstance(approve, bool):
        raise PydanticCustomError(
            "approve_not_boolean",
            "approve must be true or false (a YAML boolean), not {value}",
            {"value": repr(approve)},
        )
    return limits


ToolPolicy = Annotated[dict[str, Any], AfterValidator(_approve_is_a_boolean)]


class KnowledgeContext(BaseModel):
    """The `context:` of an assistant rule."""

    model_config = ConfigDict(extra="forbid")

    knowledge: str = Field(description="the collection searched")
    query: str = Field(min_length=1, description="a template, rendered like the prompt")
    k: int = Field(4, ge=1, le=MAX_PASSAGES)


# Per container file the gateway downloads (chart.png, summary.csv): a bigger one is refused
# with a step error (docs/assistants.md, Hosted tools); `max_file_bytes` may lower it.
MAX_CONTAINER_FILE_BYTES = 20 * 1024 * 1024
# Files downloaded from one run's container at most; the rest are refused the same way.
MAX_CONTAINER_FILES = 20
CODE_INTERPRETER = "code_interpreter"
# In `code_interpreter.files`, the prefix naming a knowledge collection.
KNOWLEDGE = "knowledge:"


class CodeInterpreter(BaseModel):
    """`code_interpreter` in an assistant's `tools:` (Responses profiles only): the hosted
    Python sandbox, one container per run, its produced files downloaded into the run."""

    model_config = ConfigDict(extra="forbid")

    # The container's memory; its price per session is in gateway.assistant.models.
    memory: Literal["1g", "4g", "16g", "64g"] = "1g"
    # Put in the container once they exist: files made earlier in the run (report.csv), by
    # name, or `knowledge:NAME` for every file of a knowledge collection.
    files: list[str] = Field(default_factory=list)
    # The run fails before a model turn once its container is older than this.
    max_container_minutes: float = Field(20, gt=0, le=24 * 60)
    max_file_bytes: int = Field(MAX_CONTAINER_FILE_BYTES, gt=0, le=MAX_CONTAINER_FILE_BYTES)
    # The container is deleted when the run ends; true leaves it to expire at OpenAI after its
    # idle minutes (to look into it there). A container serves one run, never a thread.
    keep_container: bool = False


class Assistant(BaseModel):
    """`assistant:` hand the event to a model with instructions and a tool allowlist."""

    model_config = ConfigDict(extra="forbid")

    model: str = "default"
    instructions: str = ""
    prompt: str
    thread: str | None = None
    tools: list[str] = Field(default_factory=list)
    policy: dict[str, ToolPolicy] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)
    # Passages of a knowledge collection put before the prompt (docs/knowledge.md).
    context: KnowledgeContext | None = None
    # Hosted knowledge collections the model searches with the hosted `file_search` tool.
    file_search: list[str] = Field(default_factory=list)
    # Set from `tools:` (`code_interpreter` or `{code_interpreter: {...}}`), not written here.
    code_interpreter: CodeInterpreter | None = None

    @property
    def listed_tools(self) -> list[str]:
        """Its `tools:` as the rule file lists them, hosted ones included (for views)."""
        return [*self.tools, *([CODE_INTERPRETER] if self.code_interpreter else [])]

    @model_validator(mode="before")
    @classmethod
    def _hosted_tools(cls, value: Any) -> Any:
        # A hosted tool is no registry tool: taken out of the allowlist, kept with its options.
        if not isinstance(value, dict) or not isinstance(value.get("tools"), list):
            return value
        tools: list[Any] = []
        options: Any = None
        for entry in value["tools"]:
            if entry == CODE_INTERPRETER:
                options = {}
            elif isinstance(entry, dict) and list(entry) == [CODE_INTERPRETER]:
                options = entry[CODE_INTERPRETER] or {}
            else:
                tools.append(entry)
        if options is None:
            return value
        return {**value, "tools": tools, CODE_INTERPRETER: options}


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str | None = None
    every: str | None = None
    timezone: str = "UTC"
    jitter: int | None = None
    misfire_grace: int | None = None
    catch_up: bool = False


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    trigger: Trigger | None = Field(None, alias="on")
    schedule: Schedule | None = None
    when: str | None = None
    order_by: str | None = None
    actions: list[Action] = Field(default_factory=list)
    assistant: Assistant | None = None
    mode: Literal["live", "shadow"] = "live"
    enabled: bool = True
    # Over the `retry:` policy of gateway.yaml (and its per-tool overrides) for this rule's runs.
    retry: RetryOverride | None = None
    budget: Budget | None = None
    # Checked by `gateway eval` only (gateway/rules/expect.py, docs/eval.md).
    expect: Expectation | None = None
    tests: list[RuleTest] = Field(default_factory=list)

    @field_validator("when", "order_by", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return value if value is None or isinstance(value, str) else str(value)

    @model_validator(mode="after")
    def _one_of_each(self) -> Rule:
        if (self.trigger is None) == (self.schedule is None):
            raise ValueError("a rule needs exactly one of `on` or `schedule`")
        if not self.actions and self.assistant is None:
            raise ValueError("a rule needs `actions` or an `assistant`")
        if self.actions and self.assistant is not None:
            raise ValueError("a rule has `actions` or an `assistant`, not both")
        return self

    @property
    def tools(self) -> list[str]:
        """The tool names a run may call: its assistant's allowlist, or its actions'."""
        return list(self.assistant.tools) if self.assistant else [a.tool for a in self.actions]

    @property
    def kind(self) -> Literal["actions", "assistant"]:
        return "assistant" if self.assistant is not None else "actions"
