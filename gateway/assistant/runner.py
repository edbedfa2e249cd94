"""The executor of assistant runs: model profiles and their clients, one per profile.

Each run is a `Conversation` (loop.py) driven with the services the worker shares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.assistant.backends import Backend, make_backend
from gateway.assistant.budget import Budgets
from gateway.assistant.container import Interpreter
from gateway.assistant.loop import Conversation
from gateway.assistant.models import ModelProfile, load_profiles
from gateway.assistant.responses import ResponsesBackend
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.rules.model import Assistant, Rule
from gateway.runs.executor import ExecutorFactory, RunServices
from gateway.store import Event, Run, Step
from gateway.tools import Tool


class AssistantRunner:
    """The executor of assistant runs, built from the worker's services:
    `Worker(..., executors={"assistant": AssistantRunner.factory(config)})`."""

    def __init__(
        self,
        config: Config,
        services: RunServices,
        *,
        make: Callable[[ModelProfile], Backend] = make_backend,
        tools: dict[str, Tool] | None = None,
    ) -> None:
        self.profiles = load_profiles(config.models)
        self.budgets = Budgets(config)  # checked before every model turn
        self.services = services
        self.tools = tools if tools is not None else services.tools
        self._make = make
        self._backends: dict[str, Backend] = {}

    @classmethod
    def factory(
        cls,
        config: Config,
        *,
        make: Callable[[ModelProfile], Backend] = make_backend,
        tools: dict[str, Tool] | None = None,
    ) -> ExecutorFactory:
        return lambda services: cls(config, services, make=make, tools=tools)

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()
        self._backends.clear()

    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            profile = self.profiles.get(name)
            if profile is None:
                raise ConfigError([f"no model profile named {name!r} under `models:`"])
            self._backends[name] = self._make(profile)
        return self._backends[name]

    def interpreter(
        self,
        run: Run,
        spec: Assistant,
        journal: list[Step],
        unsaved: list[tuple[int, dict[str, Any]]],
    ) -> Interpreter:
        """The hosted code interpreter of `run`, as its journal left it; ConfigError when its
        rule's profile is not on the Responses API (`gateway check` says so first)."""
        options, name = spec.code_interpreter, spec.model
        assert options is not None
        backend = self.backend(name)
        if not isinstance(backend, ResponsesBackend):
            raise ConfigError([f"profile {name!r} is not on the Responses API"])
        found = Interpreter(
            backend.client,
            options,
            run,
            self.services.outcomes.files.setdefault(run.id, {}),
            self.services.store,
            unsaved,
            self._knowledge_files,
        )
        found.restore(journal)
        return found

    async def _knowledge_files(self, collection: str) -> list[tuple[str, bytes]]:
        # The knowledge family's client (a gateway.knowledge.Library): that package imports
        # this one, so it is reached through the toolbox.
        library = await self.services.toolbox.client("knowledge")
        files: list[tuple[str, bytes]] = await library.files(collection)
        return files

    async def execute(
        self, run: Run, rule: Rule, event: Event, scope: dict[str, Any], journal: list[Step]
    ) -> None:
        assert rule.assistant is not None
        await self.services.journal.restore_files(run, rule.assistant.tools, journal)
        await Conversation(self, run, rule, scope).run(journal)
