"""`gateway eval --offline`: read-only tools answer with what the live runs journaled for the
same call (tool and validated arguments), and reach nothing outside."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from gateway.errors import PermanentToolError
from gateway.store import Run, Store
from gateway.store.records import call_digest
from gateway.store.status import StepStatus
from gateway.tools import Tool, ToolContext


@dataclass
class ReplayedTool(Tool):
    """A read-only tool whose calls are answered from the live journal (by `call_digest`)."""

    journal: Mapping[str, Any] = field(default_factory=dict)

    async def call(self, context: ToolContext[Any, Any], arguments: dict[str, Any]) -> Any:
        digest = call_digest(self.name, arguments)
        if digest not in self.journal:
            raise PermanentToolError(
                f"offline: the live runs made no {self.name} call with these arguments"
            )
        return self.journal[digest]


async def journaled_results(store: Store, runs: Iterable[Run]) -> dict[str, Any]:
    """The results of the succeeded tool calls of `runs`, by `call_digest`."""
    results: dict[str, Any] = {}
    for run in runs:
        for step in await store.steps.of_run(run.id):
            if step.kind == "tool" and step.status == StepStatus.SUCCEEDED:
                results[call_digest(step.tool, step.arguments)] = step.result
    return results


def offline_tools(tools: Mapping[str, Tool], journal: Mapping[str, Any]) -> dict[str, Tool]:
    """`tools` with every read-only one answering from `journal` instead of being called."""
    return {
        name: tool
        if tool.side_effects
        else ReplayedTool(**{f.name: getattr(tool, f.name) for f in fields(tool)}, journal=journal)
        for name, tool in tools.items()
    }
