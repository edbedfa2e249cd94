"""The Responses API backend: stateless, the whole conversation goes out on every turn.

Its output items are already the conversation's own form, so a turn is read off them.
"""

from __future__ import annotations

from gateway.assistant.client import OpenAIBackend, list_at, string_at
from gateway.assistant.turn import Call, Item, ModelError, Turn, function_call_item


class ResponsesBackend(OpenAIBackend):
    """The OpenAI Responses API, stateless: the whole conversation goes out every turn."""

    async def _turn(self, instructions: str, items: list[Item], tools: list[Item]) -> Turn:
        extra = self._options()
        if tools:
            extra["tools"] = tools
            extra["parallel_tool_calls"] = True
        if instructions:
            extra["instructions"] = instructions
        # The body as built: our items are already in wire form, and the typed
        # `responses.create` would walk and copy the whole conversation on every turn (a fifth
        # of the gateway's CPU in bench/assistants).
        body = {"model": self.profile.model, "input": items, "store": False, **extra}
        return await self.answer("/responses", body, self._read)

    def _read(self, response: Item) -> Turn:
        status = response.get("status")
        if status in ("failed", "incomplete", "cancelled"):
            raise ModelError(
                f"model {self.profile.model}: response {response.get('id')} {status}: "
                + problem_of(response),
                retryable=status == "failed",
            )
        return turn_from_response(response)


def turn_from_response(response: Item) -> Turn:
    """A Responses API answer (plain JSON) as a turn; KeyError/TypeError if it is not one."""
    texts: list[str] = []
    calls: list[Call] = []
    items: list[Item] = []
    citations: list[Item] = []
    code: list[Item] = []
    container_files: list[Item] = []
    for output in list_at(response, "output"):
        kind = output["type"]
        # Output ids are left out: with store=False the server cannot look them up again.
        if kind == "function_call":
            call = Call(
                string_at(output, "call_id"),
                string_at(output, "name"),
                string_at(output, "arguments"),
            )
            calls.append(call)
            items.append(function_call_item(call))
        elif kind == "message":
            parts = list_at(output, "content")
            text = "".join(
                string_at(part, "text" if part["type"] == "output_text" else "refusal")
                for part in parts
            )
            if text:
                texts.append(text)
                items.append({"type": "message", "role": "assistant", "content": text})
            notes = [
                note
                for part in parts
                if part["type"] == "output_text"
                for note in part.get("annotations") or []
            ]
            citations += [
                {"file_id": note["file_id"], "filename": note.get("filename")}
                for note in notes
                if note["type"] == "file_citation"
            ]
            container_files += [
                {
                    "container_id": string_at(note, "container_id"),
                    "file_id": string_at(note, "file_id"),
                    "filename": note.get("filename"),
                }
                for note in notes
                if note["type"] == "container_file_citation"
            ]
        elif kind == "code_interpreter_call":
            ran = ran_code(output)
            code.append(ran)
            # The call item itself cannot go back with store=False (its id is unknown to the
            # server then): the model reads what it ran, and its logs, as its own message.
            items.append({"type": "message", "role": "assistant", "content": ran_text(ran)})
    usage = response.get("usage") or {}
    return Turn(
        text="\n\n".join(texts) or None,
        calls=calls,
        items=items,
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        model=str(response.get("model") or ""),
        response_id=response.get("id"),
        citations=citations,
        code=code,
        container_files=container_files,
    )


def ran_code(call: Item) -> Item:
    """What a `code_interpreter_call` ran, as the journal keeps it."""
    outputs = call.get("outputs") or []
    return {
        "container_id": call["container_id"],
        "code": call.get("code") or "",
        "logs": "".join(o["logs"] for o in outputs if o["type"] == "logs"),
        "images": [o["url"] for o in outputs if o["type"] == "image"],
        "status": call["status"],
    }


def ran_text(ran: Item) -> str:
    logs = f"\nlogs:\n{ran['logs']}" if ran["logs"] else ""
    return f"(code_interpreter, {ran['status']})\n```python\n{ran['code']}\n```{logs}"


def problem_of(response: Item) -> str:
    error = response.get("error")
    if error:
        return f"{error.get('code')}: {error.get('message')}"
    incomplete = response.get("incomplete_details")
    if incomplete:
        return str(incomplete.get("reason"))
    return "no reason given"
