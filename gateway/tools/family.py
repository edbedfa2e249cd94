"""Tool families: the tools of one outside system, the settings model of its `handlers:` block,
and the client its calls share; the registries of families and tools, filled by entry points.

A module of tools makes its `Family` and decorates its functions with `family.tool(...)`; the
`gateway.tools` entry point names that family, so a package adds tools without editing this one.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, overload

from pydantic import BaseModel, ConfigDict, ValidationError

from gateway import plugins
from gateway.tools.tool import ClientT, SettingsT, Tool, ToolFunction, arguments_model

FAMILIES: plugins.Registry[Family[Any, Any]] = plugins.registry(plugins.TOOLS)
# Every tool of every family, by its full name (`jira.create_issue`); read through `TOOLS`.
_TOOLS: dict[str, Tool] = {}

Opener = Callable[[SettingsT], AbstractAsyncContextManager[ClientT]]
# Where in a family's block a problem is (`("sever",)`), and what it is.
SettingsProblem = tuple[tuple[str | int, ...], str]


class FamilySettings(BaseModel):
    """Base of a family's settings model: an unknown key is an error (`gateway check` names the
    closest known one), and a number where text is wanted (a port, a password) is read as the
    text YAML would have kept."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class NoSettings(FamilySettings):
    """The settings of a family that has none: its block under `handlers:` must be empty."""


class Family(Generic[SettingsT, ClientT]):
    """The tools of one outside system, named by the part of their names before the dot.

    `settings` validates the family's block under `handlers:` (at `gateway check` and start-up);
    `client`, an async context manager factory, opens what the family's calls share (a Jira
    client, an HTTP client) from those settings: once per gateway, on first use, and closed
    with it. A tool reaches both through its `ToolContext[Settings, Client]`.
    """

    @overload
    def __init__(self: Family[NoSettings, None], name: str) -> None: ...

    @overload
    def __init__(self: Family[SettingsT, None], name: str, settings: type[SettingsT]) -> None: ...

    @overload
    def __init__(
        self, name: str, settings: type[SettingsT], *, client: Opener[SettingsT, ClientT]
    ) -> None: ...

    def __init__(
        self,
        name: str,
        settings: type[Any] = NoSettings,
        *,
        client: Opener[Any, Any] | None = None,
    ) -> None:
        self.name = name
        self.settings: type[SettingsT] = settings
        self.opener = client
        self.tools: dict[str, Tool] = {}
        FAMILIES.add(name, self)

    def tool(
        self, name: str, *, side_effects: bool = True, makes_files: bool = False
    ) -> Callable[[ToolFunction], Tool]:
        """Register an async function `(context, **arguments)` as the tool `name` (decorator);
        `name` is the family's name, a dot, and the tool's own."""
        if name.partition(".")[0] != self.name or "." not in name:
            raise ValueError(f"tool {name!r} is not named {self.name}.<tool>")

        def register(function: ToolFunction) -> Tool:
            if name in _TOOLS:
                raise ValueError(f"tool {name!r} is registered twice")
            if makes_files and side_effects:
                raise ValueError(
                    f"tool {name!r}: a tool that makes files is called again on resume"
                )
            registered = Tool(
                name=name,
                function=function,
                description=inspect.cleandoc(function.__doc__ or name),
                arguments=arguments_model(name, function),
                side_effects=side_effects,
                makes_files=makes_files,
            )
            self.tools[name] = _TOOLS[name] = registered
            return registered

        return register

    def validate(self, block: Mapping[str, Any]) -> SettingsT:
        """The family's settings from its block under `handlers:`; raises ValidationError."""
        return self.settings.model_validate(dict(block))

    def problems(self, block: Mapping[str, Any]) -> list[SettingsProblem]:
        """What is wrong in the family's block, each at its field, for `gateway check`: an
        unknown key names the closest known one."""
        try:
            self.validate(block)
        except ValidationError as exc:
            known = list(self.settings.model_fields) + [
                f.alias for f in self.settings.model_fields.values() if f.alias
            ]
            found: list[SettingsProblem] = []
            for error in exc.errors():
                message = error["msg"]
                if error["type"] == "extra_forbidden" and error["loc"]:
                    message += _suggestion(str(error["loc"][-1]), known)
                found.append((tuple(error["loc"]), message))
            return found
        return []

    def __repr__(self) -> str:
        return f"Family({self.name!r}, {self.settings.__name__})"


def tool(
    name: str, *, side_effects: bool = True, makes_files: bool = False
) -> Callable[[ToolFunction], Tool]:
    """Register a tool of a family with no settings and no client (decorator): the family, by
    the part of `name` before the dot, is made on first use."""
    family_name = name.partition(".")[0]
    family = FAMILIES.registered(family_name) or Family(family_name)
    return family.tool(name, side_effects=side_effects, makes_files=makes_files)


class Tools(Mapping[str, Tool]):
    """Every registered tool by name, from every family the entry points and the program add.

    A lookup loads the family its name starts with (`jira.create_issue`: the `jira` entry point)
    and no other; listing loads them all.
    """

    def __getitem__(self, name: str) -> Tool:
        FAMILIES.load_name(name.partition(".")[0])
        if name not in _TOOLS:  # a tool registered under another family's entry point
            FAMILIES.load()
        return _TOOLS[name]

    def __iter__(self) -> Iterator[str]:
        FAMILIES.load()
        return iter(list(_TOOLS))

    def __len__(self) -> int:
        FAMILIES.load()
        return len(_TOOLS)

    def forget(self, name: str) -> None:
        """Unregister a tool (and its family once it has none left): for tests and examples
        that register their own."""
        tool = _TOOLS.pop(name)
        family = FAMILIES.registered(tool.family)
        if family is not None:
            family.tools.pop(name, None)
            if not family.tools:
                del FAMILIES[family.name]


TOOLS = Tools()


def _suggestion(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
