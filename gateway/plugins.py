"""Extension points: the entry-point groups through which a package adds providers or tools.

The gateway lists its own providers and tool families in its pyproject.toml like any plugin, so
one lookup finds them all. A `Registry` imports an entry point when its name is first looked up,
and the whole group when it is first listed: a gateway loads the providers and tool families its
config and rules name, not every one installed (each costs memory: docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, MutableMapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

# Defined in gateway.errors (the whole tree in one module), imported from here too.
from gateway.errors import PluginError as PluginError

PROVIDERS = "gateway.providers"
"""Webhook providers: `name = "package.module:ProviderClass"`, the name being the class's `name`."""
TOOLS = "gateway.tools"
"""Tool families: `family = "package.module:family"`, a `gateway.tools.Family` by that name."""

# What each group registers, as messages name it.
KINDS = {PROVIDERS: "provider", TOOLS: "tool family"}

T = TypeVar("T")


class Registry(MutableMapping[str, T]):
    """Name → what a group's entry points register, filled as names are read.

    Importing what an entry point names registers it (a provider class by being defined, a tool
    family by being made): a registry only imports. A lookup by name imports the entry points of
    that name alone (the whole group if none has it); listing, counting or `load()` imports them
    all. Code may also register in-process (a test's own tool), without loading the group.
    """

    def __init__(self, group: str, kind: str) -> None:
        self.group = group
        self.kind = kind
        self._found: dict[str, T] = {}
        self._loaded = False
        self._loading = False
        self._points: list[EntryPoint] | None = None
        # Names whose entry points have been imported whole (a definition registers its name
        # before the rest of its module, e.g. a family before its tools, so registered is not
        # enough for another thread).
        self._imported: set[str] = set()
        # Re-entrant: a module being imported by the load may read the registry on the same
        # thread (it sees what is registered so far); another thread waits for the whole load.
        self._lock = threading.RLock()

    def add(self, name: str, value: T) -> None:
        """Register `value` as `name`, as a definition does when it is imported."""
        if name in self._found and self._found[name] is not value:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._found[name] = value

    def registered(self, name: str) -> T | None:
        """What is registered as `name` so far, without loading the group (for definitions
        that register while the group is being loaded)."""
        return self._found.get(name)

    def load(self) -> None:
        """Import every entry point of the group (once); each must register its own name."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                for point in self._entry_points():
                    self._import(point)
            finally:
                self._loading = False
                self._loaded = True

    def load_name(self, name: str) -> None:
        """Import the entry points named `name` (once), or the whole group if none is: a name
        registered only in-process, or by another entry point, is found either way."""
        if self._loaded or name in self._imported:
            return
        with self._lock:
            if self._loaded or self._loading or name in self._imported:
                return
            named = [point for point in self._entry_points() if point.name == name]
            if not named:
                self.load()
                return
            self._loading = True
            try:
                for point in named:
                    self._import(point)
            finally:
                self._loading = False
                self._imported.add(name)

    def _entry_points(self) -> list[EntryPoint]:
        if self._points is None:
            self._points = sorted(entry_points(group=self.group), key=lambda p: p.name)
        if not self._points:
            # The gateway lists its own: none at all means metadata older than pyproject.toml.
            raise PluginError(
                f"no {self.group} entry points are installed: reinstall webhook-gateway "
                "(pip install -e .) so its metadata lists its providers and tools"
            )
        return self._points

    def _import(self, point: EntryPoint) -> None:
        try:
            point.load()
        except Exception as exc:
            raise PluginError(
                f"entry point {point.name} = {point.value} ({self.group}) does not load: {exc!r}"
            ) from exc
        if point.name not in self._found:
            raise PluginError(
                f"entry point {point.name} = {point.value} ({self.group}) registers no "
                f"{self.kind} named {point.name!r}"
            )

    def __getitem__(self, name: str) -> T:
        self.load_name(name)
        return self._found[name]

    def __setitem__(self, name: str, value: T) -> None:
        self.add(name, value)

    def __delitem__(self, name: str) -> None:
        del self._found[name]

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(list(self._found))

    def __len__(self) -> int:
        self.load()
        return len(self._found)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self.load_name(name)
        return name in self._found


@functools.cache
def registry(group: str) -> Registry[Any]:
    """The one registry of `group`, shared by every module that looks names up in it."""
    return Registry(group, KINDS[group])
