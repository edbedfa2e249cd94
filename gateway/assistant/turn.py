"""The conversation form every model backend speaks: a model's turn, the calls it asks for, the
`Backend` interface, and the error a failed turn raises.

Items are Responses input items whatever the wire format, so the tool loop and the stored
threads never see which API a model profile uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from gateway.assistant.models import ModelProfile

# Defined in gateway.errors (the whole tree in one module), imported from here too.
from gateway.errors import ModelError as ModelError

Item = dict[str, Any]


@dataclass(frozen=True)
class Call:
    """A function call the model asked for; `arguments` is the JSON text exactly as sent.

    `call_id` pairs the call with its output in the conversation and is unique in it; when the
    model sent an id the conversation already had, `model_call_id` keeps the model's.
    """

    call_id: str
    name: str
    arguments: str
    model_call_id: str | None = None

    @property
    def tool(self) -> str:
        """The registry name (`jira.create_issue`) of the wire name (`jira__create_issue`)."""
        return self.name.replace("__", ".")


@dataclass
class Turn:
    """One model response, in the conversation's own form."""

    text: str | None
    calls: list[Call] = field(default_factory=list)
    # Append these to the conversation: the assistant message and function_call items.
    items: list[Item] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    response_id: str | None = None
    # Files a hosted `file_search` found and the answer cites: {file_id, filename}.
    citations: list[Item] = field(default_factory=list)
    # What a hosted `code_interpreter` ran in this turn: {container_id, code, logs, status}.
    code: list[Item] = field(default_factory=list)
    # Container files the answer cites (`container_file_citation`): {container_id, file_id,
    # filename}; the files the code made for the gateway to fetch.
    container_files: list[Item] = field(default_factory=list)

    def with_unique_call_ids(self, conversation: list[Item]) -> Turn:
        """This turn with every call id new to `conversation` and to the turn itself.

        OpenAI-compatible servers may number calls `call_0`, `0`, ... in every response: an id
        the conversation already has (or this turn has already used) is replaced, in the calls
        and in the items alike, so each output pairs with exactly one call.
        """
        taken = {i["call_id"] for i in conversation if i.get("type") == "function_call"}
        calls: list[Call] = []
        for call in self.calls:
            if call.call_id in taken:
                call = replace(call, call_id=new_call_id(taken), model_call_id=call.call_id)
            taken.add(call.call_id)
            calls.append(call)
        if calls == self.calls:
            return self
        # The function_call items are the calls, in order (both backends build them so).
        renamed = iter(calls)
        items = [
            function_call_item(next(renamed)) if i.get("type") == "function_call" else i
            for i in self.items
        ]
        return replace(self, calls=calls, items=items)


class Backend(Protocol):
    profile: ModelProfile

    async def turn(self, instructions: str, items: list[Item], tools: list[Item]) -> Turn:
        """Send the whole conversation and the tool definitions; the model's next turn.

        `items` are Responses input items (`message`, `function_call`,
        `function_call_output`); `tools` are `Tool.definition()`s. The turn's call ids are
        unique in the conversation (`Turn.with_unique_call_ids`). Raises ModelError.
        """
        ...

    async def aclose(self) -> None: ...


def new_call_id(taken: Collection[str] = ()) -> str:
    """A call id for a call the model sent without one, or with one already used."""
    while True:
        # The form OpenAI uses, short: some compatible servers limit the length of an id.
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        if call_id not in taken:
            return call_id


def function_call_item(call: Call) -> Item:
    return {
        "type": "function_call",
        "call_id": call.call_id,
        "name": call.name,
        "arguments": call.arguments,
    }
