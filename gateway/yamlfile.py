"""YAML documents that remember where each value came from.

Config and rule errors name the file and line of the offending field; this keeps the marks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Defined in gateway.errors (the whole tree in one module), imported from here too.
from gateway.errors import YamlSyntaxError as YamlSyntaxError

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Duplicate:
    """A key given twice in one mapping: where it is, and the lines of both."""

    location: Location
    first: int
    line: int

    @property
    def message(self) -> str:
        return (
            f"duplicate key {self.location[-1]!r} (first on line {self.first}, again on line "
            f"{self.line}): YAML would keep only the last"
        )


@dataclass
class Document:
    """Parsed YAML data plus the line of every mapping key and sequence item."""

    path: Path
    data: Any
    lines: dict[Location, int] = field(default_factory=dict)
    # Each key given twice in one mapping: YAML would silently keep the last, so the loaders
    # report these beside their own problems.
    duplicates: list[Duplicate] = field(default_factory=list)

    def line(self, location: Location) -> int | None:
        """The line of `location`, or of its nearest ancestor that has one."""
        while location:
            if location in self.lines:
                return self.lines[location]
            location = location[:-1]
        return self.lines.get((), None)

    def where(self, location: Location) -> str:
        """`file:line` for a location, as problems print it."""
        line = self.line(location)
        return f"{self.path}:{line}" if line else str(self.path)


class Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 reads `on:` (a rule's trigger) as True."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load(path: Path) -> Document:
    """Parse one YAML file; raise `YamlSyntaxError` with the line on bad syntax."""
    text = path.read_text(encoding="utf-8")
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Document(path, None)
        lines: dict[Location, int] = {}
        duplicates: list[Duplicate] = []
        _walk(loader, node, (), lines, duplicates)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise YamlSyntaxError(path, line, str(exc.problem or exc) + _hint(text, line)) from None
    finally:
        loader.dispose()
    return Document(path, data, lines, duplicates)


# `${NAME}` not inside quotes: in a flow mapping or list, YAML reads its braces as its own.
_BARE_VARIABLE = re.compile(r"""(?<!["'])(\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\})""")


def _hint(text: str, line: int | None) -> str:
    """The fix for the most common syntax error in a config: an unquoted `${VAR}` in `{...}`."""
    lines = text.splitlines()
    if line is None or not 1 <= line <= len(lines):
        return ""
    found = _BARE_VARIABLE.search(lines[line - 1])
    if found is None:
        return ""
    return f' (inside {{...}} or [...] a variable must be quoted, so quote it: "{found.group(1)}")'


def _walk(
    loader: Loader,
    node: yaml.Node,
    at: Location,
    lines: dict[Location, int],
    duplicates: list[Duplicate],
) -> None:
    lines[at] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str | int):
                continue
            if key in first:
                duplicates.append(Duplicate((*at, key), first[key], line))
            # The data holds the last of equal keys: so do the lines its problems point at.
            first.setdefault(key, line)
            lines[(*at, key)] = line
            _walk(loader, value_node, (*at, key), lines, duplicates)
            lines[(*at, key)] = line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(loader, item, (*at, index), lines, duplicates)
