"""The Chat Completions backend, for OpenAI-compatible servers (Ollama, vLLM, LM Studio, LiteLLM),
and the conversion between the conversation's items and Chat messages.
"""

from __future__ import annotations

import json

from openai.types.chat import ChatCompletion

from gateway.assistant.client import OpenAIBackend
from gateway.assistant.turn import Call, Item, ModelError, Turn, function_call_item, new_call_id


class ChatBackend(OpenAIBackend):
    """Chat Completions, for OpenAI-compatible servers (Ollama, vLLM, LM Studio, LiteLLM)."""

    async def _turn(self, instructions: str, items: list[Item], tools: list[Item]) -> Turn:
        extra = self._options()
        chat_tools = chat_tools_from(tools)
        if chat_tools:
            extra["tools"] = chat_tools
        completion: ChatCompletion = await self.client.post(
            "/chat/completions",
            body={
                "model": self.profile.model,
                "messages": chat_messages_from(instructions, items),
                **extra,
            },
            cast_to=ChatCompletion,
        )
        if not completion.choices:
            raise ModelError(
                f"model {self.profile.model}: completion {completion.id} has no choices",
                retryable=True,
            )
        choice = completion.choices[0]
        if choice.finish_reason in ("length", "content_filter") and not choice.message.tool_calls:
            raise ModelError(
                f"model {self.profile.model}: completion {completion.id} stopped early "
                f"({choice.finish_reason})",
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


def turn_from_completion(completion: ChatCompletion) -> Turn:
    message = completion.choices[0].message
    text = message.content or message.refusal or None
    items: list[Item] = []
    if text:
        items.append({"type": "message", "role": "assistant", "content": text})
    calls: list[Call] = []
    for tool_call in message.tool_calls or []:
        if tool_call.type != "function":
            continue
        # Some compatible servers leave the id out; the conversation needs one to pair outputs.
        call_id = tool_call.id or new_call_id()
        call = Call(call_id, tool_call.function.name, tool_call.function.arguments)
        calls.append(call)
        items.append(function_call_item(call))
    usage = completion.usage
    return Turn(
        text=text,
        calls=calls,
        items=items,
        input_tokens=usage.prompt_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
        model=completion.model,
        response_id=completion.id,
    )


def _text(item: Item) -> str:
    content = item.get("content", "")
    if isinstance(content, str):
        return content
    # Responses content parts: input_text / output_text carry `text`.
    return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
