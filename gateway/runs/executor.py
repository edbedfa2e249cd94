"""The executor interface: how a claimed run of one kind (actions, assistant) is carried out.

The worker holds one executor per rule kind and knows nothing else of what runs do; each
executor is built from the `RunServices` the worker shares (journal, outcomes, store).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.metrics import Metrics
from gateway.rules.model import Rule
from gateway.runs.circuit import Circuits
from gateway.runs.journal import Journal
from gateway.runs.outcome import Outcomes
from gateway.runs.retry import RetryPolicy
from gateway.store import Event, Run, Step, Store
from gateway.tools import Tool, Toolbox


@dataclass(frozen=True)
class RunServices:
    """What an executor is given: the store, the step journal, how runs end, the tools."""

    store: Store
    journal: Journal
    outcomes: Outcomes
    toolbox: Toolbox
    tools: Mapping[str, Tool]
    metrics: Metrics

    @classmethod
    def assemble(
        cls,
        store: Store,
        toolbox: Toolbox,
        tools: Mapping[str, Tool],
        metrics: Metrics,
        policy: RetryPolicy,
        *,
        wake: Callable[[], None] = lambda: None,
        finishing: Callable[[], AbstractContextManager[None]] = nullcontext,
        circuits: Circuits | None = None,
        draining: Callable[[], bool] = lambda: False,
    ) -> RunServices:
        """The services of one worker: `wake` when a retry is due, `finishing` held while a
        run's last step commits, `circuits` per downstream, `draining` once it shuts down (see
        `Journal`)."""
        outcomes = Outcomes(store, policy, metrics, wake=wake)
        journal = Journal(
            store,
            toolbox,
            tools,
            outcomes,
            metrics,
            finishing=finishing,
            circuits=circuits,
            draining=draining,
        )
        return cls(store, journal, outcomes, toolbox, tools, metrics)


class Executor(Protocol):
    """Carries out runs of one kind, to their end or their next pause or retry."""

    async def execute(
        self, run: Run, rule: Rule, event: Event, scope: dict[str, Any], journal: list[Step]
    ) -> None:
        """Run `run` of `rule` for `event`; `journal` is its steps so far ([] if fresh).

        It ends the run through `RunServices.outcomes` (or the journal), or leaves it paused.
        """

    def start(self) -> None:
        """Begin the executor's own background work, if any; called once the worker starts."""

    async def aclose(self) -> None:
        """Release what the executor opened (model clients); called once the worker stops."""


# Builds an executor from the worker's services; `Worker(executors={kind: factory})`.
ExecutorFactory = Callable[[RunServices], Executor]
