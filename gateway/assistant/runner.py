"""The executor of assistant runs: model profiles and their clients, one per profile.

Each run is a `Conversation` (loop.py) driven with the services the worker shares.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from gateway.assistant.backends import Backend, make_backend
from gateway.assistant.budget import Budgets
from gateway.assistant.container import Interpreter
from gateway.assistant.loop import Conversation
from gateway.assistant.models import ModelProfile, load_profiles
from gateway.assistant.responses import ResponsesBackend
from gateway.assistant.teardown import delete_container, sweep
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.rules.model import Assistant, Rule
from gateway.runs.executor import ExecutorFactory, RunServices
from gateway.store import Event, Run, Step
from gateway.store.status import FINISHED
from gateway.tools import Tool

if TYPE_CHECKING:
    import openai

log = structlog.get_logger(__name__)
# How often the containers a crash left undeleted are swept for (at start, then this often).
SWEEP_EVERY_SECONDS = 300.0


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
        self._sweeping: asyncio.Task[None] | None = None

    @classmethod
    def factory(
        cls,
        config: Config,
        *,
        make: Callable[[ModelProfile], Backend] = make_backend,
        tools: dict[str, Tool] | None = None,
    ) -> ExecutorFactory:
        return lambda services: cls(config, services, make=make, tools=tools)

    def start(self) -> None:
        """Sweep for the containers of runs that ended just before a crash (teardown.sweep)
        as the worker starts and every SWEEP_EVERY_SECONDS after, runs or none: a quiet
        gateway left them to expire at OpenAI."""
        self._sweeping = asyncio.create_task(self._sweep_loop(), name="container-sweep")

    async def _sweep_loop(self) -> None:
        while True:
            await sweep(self.services.store, self._client_of)  # logs its own errors
            await asyncio.sleep(SWEEP_EVERY_SECONDS)

    async def aclose(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeping
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
            name,
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
        conversation = Conversation(self, run, rule, scope)
        await conversation.run(journal)
        if conversation.hosted is not None:
            await self._release(conversation.hosted)

    async def _release(self, hosted: Interpreter) -> None:
        """Once its run has ended (not paused, nor to be retried), delete its container. Never
        raises: the run has ended, and an error here would have the worker retry it; a
        deletion the store failed to journal is the sweep's."""
        if hosted.container_id is None or hosted.options.keep_container:
            return
        store = self.services.store
        try:
            ended = await store.runs.get(hosted.run.id)
            if ended is not None and ended.status in FINISHED:
                await delete_container(hosted.client, store, hosted.run.id, hosted.container_id)
        except Exception as exc:
            log.error("container.release_failed", container=hosted.container_id, error=str(exc))

    def _client_of(self, made: Step) -> openai.AsyncOpenAI | None:
        """The client of the profile that made a container, if it is still a Responses one."""
        try:
            backend = self.backend(made.arguments.get("model", "default"))
        except ConfigError:
            return None
        return backend.client if isinstance(backend, ResponsesBackend) else None
