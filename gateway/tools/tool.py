"""A tool: a typed async function that rules and assistants call, and what it is called with.

A tool's JSON schema (strict, as OpenAI function calling wants it) and its argument validation
both come from the function's signature through pydantic; its docstring is its description.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from gateway.errors import PermanentToolError as PermanentToolError

# Defined in gateway.errors (the whole tree in one module), imported from here too.
from gateway.errors import ToolError as ToolError
from gateway.tools.schema import closed, strict_schema

SettingsT = TypeVar("SettingsT", bound=BaseModel)
ClientT = TypeVar("ClientT")


@dataclass
class ToolContext(Generic[SettingsT, ClientT]):
    """What a tool is given besides its arguments: `ToolContext[ItsSettings, ItsClient]`."""

    # Stable across every retry of one step, and across a crash: the idempotency key.
    key: str
    # The family's block from `handlers:` in gateway.yaml, validated by the family's model.
    settings: SettingsT
    # Hands out the family's client, opened on first use and shared by every call after it.
    connect: Callable[[], Awaitable[ClientT]]
    run_id: int | None = None
    # Files produced earlier in the run (name → bytes), e.g. a CSV to attach to an email.
    files: dict[str, bytes] = field(default_factory=dict)
    # The gateway's own store, for tools that read it (`gateway.runs`); set by the worker.
    store: Any = None

    async def client(self) -> ClientT:
        """The family's client (None for a family without one). Opening it may fail like a
        call: a `PermanentToolError` for a setting it lacks, a `ToolError` otherwise."""
        return await self.connect()


class Html:
    """Marks a tool argument as HTML, in its `Annotated[...]`: a rule's template for it is
    rendered with autoescape, so what a payload puts in arrives as text, not as markup."""

    def __repr__(self) -> str:
        return "HTML"


HTML = Html()

ToolFunction = Callable[..., Awaitable[Any]]
RecoverFunction = Callable[[ToolContext[Any, Any], dict[str, Any]], Awaitable[Any | None]]
DescribeFunction = Callable[[Any], str]
FilesFunction = Callable[[dict[str, Any], Any], dict[str, bytes]]


@dataclass
class Tool:
    name: str
    function: ToolFunction
    description: str
    arguments: type[BaseModel]
    side_effects: bool
    recover_function: RecoverFunction | None = None
    # Writes files into `context.files` (kept in memory for the run); a resumed run rebuilds
    # them by calling the tool again with its journaled arguments.
    makes_files: bool = False
    describe_function: DescribeFunction | None = None
    # Rebuilds the files a succeeded call made from its journaled arguments and result, for
    # a tool that must not be called again on resume to remake them (`files`).
    files_function: FilesFunction | None = None
    _schema: dict[str, Any] | None = field(default=None, repr=False)

    @functools.cached_property
    def html_arguments(self) -> frozenset[str]:
        """The arguments marked `HTML`, by their schema names (as rules write them)."""
        fields = self.arguments.model_fields.items()
        return frozenset(f.alias or name for name, f in fields if HTML in f.metadata)

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    def recover(self, function: RecoverFunction) -> RecoverFunction:
        """Register the check that resolves an unknown outcome (decorator).

        It gets the context (same key) and the validated arguments, and returns the earlier
        call's result if the side effect already happened, or None to let the call run again.
        """
        self.recover_function = function
        return function

    def describe(self, function: DescribeFunction) -> DescribeFunction:
        """Register what builds the description from the family's settings (decorator, given
        the settings model), for a tool whose description depends on config (`sql.query`)."""
        self.describe_function = function
        return function

    def files(self, function: FilesFunction) -> FilesFunction:
        """Register what rebuilds, on resume, the run files a call made: given its journaled
        arguments and result, no call again (decorator; `sql.query`, whose database may answer
        differently the second time)."""
        self.files_function = function
        return function

    @property
    def keeps_files(self) -> bool:
        """Whether a resumed run must rebuild files this tool made (see `restore_files`)."""
        return self.makes_files or self.files_function is not None

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validated arguments in their wire form (schema names, JSON values), defaults filled
        in: what is journaled, and what `call` accepts again. Raises pydantic's ValidationError.
        """
        return self._model(arguments).model_dump(mode="json", by_alias=True)

    def problems(self, arguments: Mapping[str, Any]) -> dict[str, str]:
        """What is wrong with each of the given arguments, judged without the others: for
        `gateway check`, which sees a rule's literal values before anything is rendered."""
        try:
            self._model(dict(arguments))
        except ValidationError as error:
            return {
                str(e["loc"][0]): e["msg"]
                for e in error.errors()
                if e["loc"] and e["loc"][0] in arguments and e["type"] != "missing"
            }
        return {}

    async def call(self, context: ToolContext[Any, Any], arguments: dict[str, Any]) -> Any:
        model = self._model(arguments)
        return await self.function(
            context, **{name: getattr(model, name) for name in type(model).model_fields}
        )

    @functools.cached_property
    def _optional(self) -> frozenset[str]:
        """The optional arguments, by their schema names."""
        fields = self.arguments.model_fields.items()
        return frozenset(f.alias or name for name, f in fields if not f.is_required())

    def _model(self, arguments: dict[str, Any]) -> BaseModel:
        optional = self._optional
        # Strict function calling sends every property; null for an optional one means default.
        given = {k: v for k, v in arguments.items() if not (v is None and k in optional)}
        return self.arguments.model_validate(given)

    def schema(self) -> dict[str, Any]:
        if self._schema is None:
            self._schema = self._build_schema()
        return copy.deepcopy(self._schema)

    def _build_schema(self) -> dict[str, Any]:
        return strict_schema(self.arguments)

    def definition(self, settings: BaseModel | None = None) -> dict[str, Any]:
        """The tool as a Responses API function definition; `settings` (the family's, as
        `Toolbox.settings` gives them) feed the description of a tool with a `describe` hook."""
        description = self.description
        if self.describe_function is not None and settings is not None:
            description = self.describe_function(settings)
        return {
            "type": "function",
            "name": self.name.replace(".", "__"),
            "description": description,
            "parameters": self.schema(),
            # Strict mode needs every object closed; a free-form map (HTTP headers, SQL
            # parameters) cannot be, so such a tool is sent non-strict and relies on our own
            # validation, which runs on every call either way.
            "strict": closed(self.schema()),
        }


def describe_error(error: ValidationError) -> str:
    """A validation error as one line per field, for logs and for the model to correct."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in error.errors()
    )


def arguments_model(name: str, function: ToolFunction) -> type[BaseModel]:
    """The pydantic model of a tool function's arguments (every parameter after `context`)."""
    signature = inspect.signature(function)
    hints = get_type_hints(function, include_extras=True)
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].name != "context":
        raise TypeError(f"tool {name}: the first parameter must be `context: ToolContext`")
    fields: dict[str, Any] = {}
    for parameter in parameters[1:]:
        if parameter.name not in hints:
            raise TypeError(f"tool {name}: parameter {parameter.name!r} has no type hint")
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (hints[parameter.name], default)
    model_name = "".join(part.title() for part in name.replace("_", ".").split("."))
    return create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
