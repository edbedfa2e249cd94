"""The Responses API as `ScriptedModel` speaks it: the body of a response, and the checks of a
request's input items that the real API makes.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.testing.llm_script import Step, estimate, new_id


def response_body(
    request: dict[str, Any], step: Step, call_ids: list[str], model: str
) -> dict[str, Any]:
    """The Responses API body for a scripted step (its calls under `call_ids`)."""
    output: list[dict[str, Any]] = [
        {
            "type": "code_interpreter_call",
            "id": new_id("ci"),
            "code": ran.code,
            "container_id": container_of(request) or "",
            "outputs": [{"type": "logs", "logs": ran.logs}] if ran.logs else [],
            "status": "completed",
        }
        for ran in step.ran
    ]
    if step.citations:
        output.append(
            {
                "type": "file_search_call",
                "id": new_id("fs"),
                "status": "completed",
                "queries": [],
                "results": None,
            }
        )
    if step.text is not None or step.container_citations:
        text = step.text or ""
        annotations: list[dict[str, Any]] = [
            {"type": "file_citation", "file_id": file_id, "filename": filename, "index": len(text)}
            for file_id, filename in step.citations
        ]
        # As OpenAI writes them: a sandbox link in the text, the annotation over its span.
        for container_id, file_id, filename in step.container_citations:
            link = f"[{filename}](sandbox:/mnt/data/{filename})"
            text += ("\n" if text else "") + link
            annotations.append(
                {
                    "type": "container_file_citation",
                    "container_id": container_id,
                    "file_id": file_id,
                    "filename": filename,
                    "start_index": len(text) - len(link),
                    "end_index": len(text),
                }
            )
        output.append(
            {
                "type": "message",
                "id": new_id("msg"),
                "role": "assistant",
                "status": "completed",
                "content": [
                    {
                        "type": "output_text",
                        "text": text,
                        "annotations": annotations,
                        "logprobs": [],
                    }
                ],
            }
        )
    for scripted, call_id in zip(step.calls, call_ids, strict=True):
        output.append(
            {
                "type": "function_call",
                "id": new_id("fc"),
                "call_id": call_id,
                "name": scripted.name,
                "arguments": scripted.arguments,
                "status": "completed",
            }
        )
    input_tokens, output_tokens = step.usage or estimate(request, output)
    now = time.time()
    return {
        "id": new_id("resp"),
        "object": "response",
        "created_at": now,
        "completed_at": now,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": request.get("model", model),
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools", []),
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
        "metadata": {},
    }


def container_of(request: dict[str, Any]) -> str | None:
    """The container of the request's `code_interpreter` tool, if it offers one by id."""
    for tool in request.get("tools") or []:
        if tool.get("type") == "code_interpreter" and isinstance(tool.get("container"), str):
            return str(tool["container"])
    return None


def check_input(body: dict[str, Any]) -> str | None:
    if not body.get("model"):
        return "model is required"
    entries = body.get("input", [])
    if isinstance(entries, str):
        return None
    calls: set[str] = set()
    for index, entry in enumerate(entries):
        kind = entry.get("type", "message")
        if kind == "message":
            if entry.get("role") not in ("user", "assistant", "system", "developer"):
                return f"input[{index}]: unknown role {entry.get('role')!r}"
        elif kind == "function_call":
            if not all(isinstance(entry.get(k), str) for k in ("call_id", "name", "arguments")):
                return f"input[{index}]: a function_call needs call_id, name and arguments"
            calls.add(entry["call_id"])
        elif kind == "function_call_output":
            if entry.get("call_id") not in calls:
                return f"input[{index}]: no function call found for call_id {entry.get('call_id')}"
        elif kind != "reasoning":
            return f"input[{index}]: unexpected item type {kind!r}"
        if body.get("store") is False and "id" in entry and kind != "reasoning":
            return f"input[{index}]: item id {entry['id']} not found (store is false)"
    return None
