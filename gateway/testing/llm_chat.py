"""Chat Completions as `ScriptedModel` speaks it: the body of a completion, and the checks of a
request's messages that the real API makes.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.testing.llm_script import Step, estimate, new_id


def completion_body(
    request: dict[str, Any], step: Step, call_ids: list[str], model: str
) -> dict[str, Any]:
    """The Chat Completions body for a scripted step (its calls under `call_ids`)."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": step.text,
        "refusal": None,
        "annotations": [],
    }
    if step.calls:
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": scripted.name, "arguments": scripted.arguments},
            }
            for scripted, call_id in zip(step.calls, call_ids, strict=True)
        ]
    input_tokens, output_tokens = step.usage or estimate(request, [message])
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", model),
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if step.calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }


def check_messages(body: dict[str, Any]) -> str | None:
    if not body.get("model"):
        return "model is required"
    pending: set[str] = set()
    for index, message in enumerate(body.get("messages", [])):
        role = message.get("role")
        if pending and role != "tool":
            return (
                f"messages[{index}]: an assistant message with tool_calls must be followed "
                f"by tool messages for each call ({', '.join(sorted(pending))})"
            )
        if role == "tool":
            if message.get("tool_call_id") not in pending:
                return f"messages[{index}]: tool message for unknown tool_call_id"
            pending.discard(message["tool_call_id"])
        elif role == "assistant":
            pending = {c["id"] for c in message.get("tool_calls") or []}
        elif role not in ("system", "developer", "user"):
            return f"messages[{index}]: unknown role {role!r}"
    return None
