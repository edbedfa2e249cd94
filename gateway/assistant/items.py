"""The items of a conversation as the journal keeps them: turns, calls and their outputs.

Pure functions of the journal's records, shared by the loop; the thread is trimmed here.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.assistant.backends import Turn
from gateway.store import Step
from gateway.store.status import StepStatus

Item = dict[str, Any]

# Thread memory keeps at most this many items; older turns are dropped whole (a call is never
# separated from its output), starting at a user message.
MAX_THREAD_ITEMS = 60


def trim(items: list[Item], keep: int = MAX_THREAD_ITEMS) -> list[Item]:
    """The newest `keep` items at most, cut at a user message so no call loses its output."""
    if len(items) <= keep:
        return items
    start = len(items) - keep
    while start < len(items) and not _is_user_message(items[start]):
        start += 1
    return items[start:]


def _is_user_message(item: Item) -> bool:
    return item.get("type") == "message" and item.get("role") == "user"


def call_output(call_id: str, output: str) -> Item:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def step_output(step: Step) -> str:
    if step.status == StepStatus.SUCCEEDED:
        return json.dumps(step.result, default=str)
    if step.status == StepStatus.REJECTED:
        return f"rejected by an operator{': ' + step.reason if step.reason else ''}"
    return step.error or step.status


def turn_record(turn: Turn) -> dict[str, Any]:
    calls = []
    for c in turn.calls:
        record = {"call_id": c.call_id, "name": c.name, "arguments": c.arguments}
        if c.model_call_id is not None:
            record["model_call_id"] = c.model_call_id  # renamed: the model's id, for audit
        calls.append(record)
    made: dict[str, Any] = {
        "text": turn.text,
        "items": turn.items,
        "calls": calls,
        "response_id": turn.response_id,
    }
    if turn.citations:
        made["citations"] = turn.citations  # what a hosted file_search answer cites
    if turn.code:
        made["code"] = turn.code  # what the hosted code_interpreter ran, for the run page
    if turn.container_files:
        made["container_files"] = turn.container_files  # the container files the answer cites
    return made


def placed(turn_position: int, calls: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """The calls of the model turn journaled at `turn_position`, each with the position of its
    own step: the positions right after the turn's, in the order the model made the calls."""
    return [(turn_position + 1 + index, call) for index, call in enumerate(calls)]


def is_step_of(step: Step, call: dict[str, Any]) -> bool:
    return step.kind == "tool" and step.call_id == call["call_id"]
