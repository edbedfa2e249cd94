"""The Chat Completions backend, for OpenAI-compatible servers (Ollama, vLLM, LM Studio, LiteLLM),
and the conversion between the conversation's items and Chat messages.
"""

from __future__ import annotations

import json

from gateway.assistant.client import OpenAIBackend, list_at, string_at
from gateway.assistant.turn import Call, Item, ModelError, Turn, function_call_item, new_call_id


class ChatBackend(OpenAIBackend):
    """Chat Completions, for OpenAI-compatible servers (Ollama, vLLM, LM Studio, LiteLLM)."""

    async def _turn(self, instructions: str, items: list[Item], tools: list[Item]) -> Turn:
        extra = self._options()
        chat_tools = chat_tools_from(tools)
        if chat_tools:
            extra["tools"] = chat_tools
        body = {
            "model": self.profile.model,
            "messages": chat_messages_from(instructions, items),
            **extra,
        }
        return await self.answer("/chat/completions", body, self._read)

    def _read(self, completion: Item) -> Turn:
        choices = list_at(completion, "choices")
        if not choices:
            raise ModelError(
                f"model {self.profile.model}: completion {completion.get('id')} has no choices",
                retryable=True,
            )
        choice = choices[0]
        finish = choice.get("finish_reason")
        if finish in ("length", "content_filter") and not choice["message"].get("tool_calls"):
            raise ModelError(
                f"model {self.profile.model}: completion {completion.get('id')} stopped early "
                f"({finish})",
                retryable=False,
            )
        return turn_from_completion(completion)


def chat_tools_from(tools: list[Item]) -> list[Item]:
    """Responses function definitions as Chat tools; hosted tools have no Chat form."""
    return [
        {
            "type": "function",
            "function": {
                key: tool[key]
                for key in ("name", "description", "parameters", "strict")
                if key in tool
            },
        }
        for tool in tools
        if tool.get("type") == "function"
    ]


def chat_messages_from(instructions: str, items: list[Item]) -> list[Item]:
    """Conversation items as Chat messages: the calls of one turn join one assistant message."""
    messages: list[Item] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = item["role"]
            messages.append(
                {"role": "system" if role == "developer" else role, "content": _text(item)}
            )
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" not in last:
                # The text said alongside these calls in the same turn.
                last["tool_calls"] = [call]
            elif last is not None and last["role"] == "assistant":
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item["output"]
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": output if isinstance(output, str) else json.dumps(output),
                }
            )
        # Other items (reasoning, hosted tool calls) exist only on the Responses API.
    return messages


def turn_from_completion(completion: Item) -> Turn:
    """A Chat completion (plain JSON) as a turn; KeyError/TypeError if it is not one."""
    message = completion["choices"][0]["message"]
    text = message.get("content") or message.get("refusal") or None
    if text is not None and not isinstance(text, str):
        raise TypeError(f"content is a {type(text).__name__}, not a string")
    items: list[Item] = []
    if text:
        items.append({"type": "message", "role": "assistant", "content": text})
    calls: list[Call] = []
    for tool_call in message.get("tool_calls") or []:
        if tool_call.get("type", "function") != "function":
            continue
        function = tool_call["function"]
        # Some compatible servers leave the id out; the conversation needs one to pair outputs.
        call_id = tool_call.get("id") or new_call_id()
        call = Call(call_id, string_at(function, "name"), string_at(function, "arguments"))
        calls.append(call)
        items.append(function_call_item(call))
    usage = completion.get("usage") or {}
    return Turn(
        text=text,
        calls=calls,
        items=items,
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        model=str(completion.get("model") or ""),
        response_id=completion.get("id"),
    )


def _text(item: Item) -> str:
    content = item.get("content", "")
    if isinstance(content, str):
        return content
    # Responses content parts: input_text / output_text carry `text`.
    return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
