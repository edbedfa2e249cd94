"""The Responses API backend: stateless, the whole conversation goes out on every turn.

Its output items are already the conversation's own form, so a turn is read off them.
"""

from __future__ import annotations

from openai.types.responses import Response, ResponseCodeInterpreterToolCall

from gateway.assistant.client import OpenAIBackend
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
        # `post` with the body as built: our items are already in wire form, and the typed
        # `responses.create` would walk and copy the whole conversation on every turn (a fifth
        # of the gateway's CPU in bench/assistants). Same client, auth, errors and parsing.
        response: Response = await self.client.post(
            "/responses",
            body={"model": self.profile.model, "input": items, "store": False, **extra},
            cast_to=Response,
        )
        if response.status in ("failed", "incomplete", "cancelled"):
            raise ModelError(
                f"model {self.profile.model}: response {response.id} {response.status}: "
                + problem_of(response),
                retryable=response.status == "failed",
            )
        return turn_from_response(response)


def turn_from_response(response: Response) -> Turn:
    texts: list[str] = []
    calls: list[Call] = []
    items: list[Item] = []
    citations: list[Item] = []
    code: list[Item] = []
    for output in response.output:
        # Output ids are left out: with store=False the server cannot look them up again.
        if output.type == "function_call":
            call = Call(output.call_id, output.name, output.arguments)
            calls.append(call)
            items.append(function_call_item(call))
        elif output.type == "message":
            text = "".join(
                part.text if part.type == "output_text" else part.refusal for part in output.content
            )
            if text:
                texts.append(text)
                items.append({"type": "message", "role": "assistant", "content": text})
            citations += [
                {"file_id": note.file_id, "filename": note.filename}
                for part in output.content
                if part.type == "output_text"
                for note in part.annotations
                if note.type == "file_citation"
            ]
        elif output.type == "code_interpreter_call":
            ran = ran_code(output)
            code.append(ran)
            # The call item itself cannot go back with store=False (its id is unknown to the
            # server then): the model reads what it ran, and its logs, as its own message.
            items.append({"type": "message", "role": "assistant", "content": ran_text(ran)})
    usage = response.usage
    return Turn(
        text="\n\n".join(texts) or None,
        calls=calls,
        items=items,
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        model=str(response.model),
        response_id=response.id,
        citations=citations,
        code=code,
    )


def ran_code(call: ResponseCodeInterpreterToolCall) -> Item:
    """What a `code_interpreter_call` ran, as the journal keeps it."""
    outputs = call.outputs or []
    return {
        "container_id": call.container_id,
        "code": call.code or "",
        "logs": "".join(o.logs for o in outputs if o.type == "logs"),
        "images": [o.url for o in outputs if o.type == "image"],
        "status": call.status,
    }


def ran_text(ran: Item) -> str:
    logs = f"\nlogs:\n{ran['logs']}" if ran["logs"] else ""
    return f"(code_interpreter, {ran['status']})\n```python\n{ran['code']}\n```{logs}"


def problem_of(response: Response) -> str:
    if response.error is not None:
        return f"{response.error.code}: {response.error.message}"
    if response.incomplete_details is not None:
        return str(response.incomplete_details.reason)
    return "no reason given"
