"""A scripted model on loopback that speaks the Responses API and Chat Completions.

Tests script each turn the model takes, point the real `openai` client at it, and fail if a
scripted turn went unused:

    with ScriptedModel(
        call("jira__create_issue", {"project": "FIN", "summary": "Card declined"}),
        answer("Filed FIN-1.", expect=lambda body: ...),
    ) as model:
        backend = make_backend(model.profile("responses"))
        ...

Steps: `call` (one function call), `turn` (several calls, and text, in one response), `answer`,
`error` (an HTTP error, e.g. 429 with Retry-After), `delay` (hold the request, to time out the
client). Each step may carry `expect`, a function given the request body that asserts on it,
and `usage=(input_tokens, output_tokens)`. The requests the model received are in `requests`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.assistant.models import ModelProfile
from gateway.testing.server import serve_in_thread

Expect = Callable[[dict[str, Any]], None]
Usage = tuple[int, int]


@dataclass(frozen=True)
class ScriptedCall:
    name: str
    arguments: str
    call_id: str | None = None


@dataclass(frozen=True)
class Step:
    """One scripted model response; build it with `call`, `turn`, `answer`, `error`, `delay`."""

    calls: tuple[ScriptedCall, ...] = ()
    text: str | None = None
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None
    seconds: float = 0.0
    expect: Expect | None = None
    usage: Usage | None = None

    def describe(self) -> str:
        if self.status != 200:
            return f"error({self.status})"
        parts = [f"call({c.name})" for c in self.calls]
        if self.text is not None:
            parts.append(f"answer({self.text[:40]!r})")
        if self.seconds:
            parts.insert(0, f"delay({self.seconds})")
        return " + ".join(parts) or "empty"


def call(
    name: str,
    arguments: dict[str, Any] | str,
    call_id: str | None = None,
    *,
    expect: Expect | None = None,
    usage: Usage | None = None,
) -> Step:
    """The model calls the tool `name` (wire form, `family__name`); a str is sent as is."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return Step(calls=(ScriptedCall(name, text, call_id),), expect=expect, usage=usage)


def turn(*parts: Step, expect: Expect | None = None, usage: Usage | None = None) -> Step:
    """One response made of several `call`s (parallel calls), and optionally an `answer`."""
    texts = [p.text for p in parts if p.text is not None]
    return Step(
        calls=tuple(c for p in parts for c in p.calls),
        text="\n\n".join(texts) if texts else None,
        expect=expect,
        usage=usage,
    )


def answer(text: str, *, expect: Expect | None = None, usage: Usage | None = None) -> Step:
    """The model answers with text and calls nothing."""
    return Step(text=text, expect=expect, usage=usage)


def error(
    status: int,
    retry_after: float | None = None,
    body: Any = None,
    *,
    retry_after_ms: int | None = None,
    expect: Expect | None = None,
) -> Step:
    """An HTTP error, with an OpenAI-style error body unless `body` is given."""
    headers: list[tuple[str, str]] = []
    if retry_after is not None:
        headers.append(("retry-after", f"{retry_after:g}"))
    if retry_after_ms is not None:
        headers.append(("retry-after-ms", str(retry_after_ms)))
    return Step(status=status, headers=tuple(headers), body=body, expect=expect)


def delay(seconds: float, then: Step | None = None, *, expect: Expect | None = None) -> Step:
    """Hold the request `seconds` (a client with a shorter timeout gives up), then answer `then`.

    Without `then` the held request ends in a 504, which a client that timed out never sees.
    """
    base = then if then is not None else Step(status=504)
    return Step(
        calls=base.calls,
        text=base.text,
        status=base.status,
        headers=base.headers,
        body=base.body,
        seconds=seconds,
        expect=expect or base.expect,
        usage=base.usage,
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ScriptedModel:
    """A Starlette app serving /v1/responses and /v1/chat/completions from a script."""

    def __init__(self, *steps: Step, model: str = "scripted-model") -> None:
        self.steps: deque[Step] = deque(steps)
        self.received: list[Received] = []
        # Failed expectations, malformed requests and requests past the script's end.
        self.problems: list[str] = []
        # The OpenAI base URL (ending in /v1) once serving.
        self.url = ""
        self.model = model
        self._lock = threading.Lock()
        self._calls = 0
        self._exit = ExitStack()
        self.app = Starlette(
            routes=[
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
            ]
        )

    def script(self, *steps: Step) -> ScriptedModel:
        """Queue more steps after those already scripted."""
        with self._lock:
            self.steps.extend(steps)
        return self

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request body received, in order."""
        return [r.body for r in self.received]

    def profile(
        self, api: Literal["responses", "chat"] = "responses", **settings: Any
    ) -> ModelProfile:
        """A `ModelProfile` pointing at this server (start it first)."""
        if not self.url:
            raise RuntimeError("the scripted model is not serving: use it as a context manager")
        return ModelProfile(
            api=api,
            model=self.model,
            base_url=self.url,
            api_key_env="SCRIPTED_MODEL_KEY",
            **settings,
        )

    def assert_all_used(self) -> None:
        """Fail if a scripted step was never requested or anything went wrong while serving."""
        with self._lock:
            problems = list(self.problems)
            unused = [s.describe() for s in self.steps]
        if unused:
            problems.append(f"{len(unused)} scripted step(s) never used: {', '.join(unused)}")
        if problems:
            raise AssertionError("ScriptedModel:\n" + "\n".join(problems))

    def __enter__(self) -> ScriptedModel:
        base = self._exit.enter_context(serve_in_thread(self.app))
        self.url = f"{base}/v1"
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._exit.close()
        if kind is None:
            self.assert_all_used()

    @classmethod
    def serving(cls, *steps: Step) -> Iterator[ScriptedModel]:
        """For a pytest fixture: `yield from ScriptedModel.serving()`."""
        with cls(*steps) as model:
            yield model

    # --- serving

    async def _responses(self, request: Request) -> JSONResponse:
        return await self._serve(request, _check_responses_input, self._response_body)

    async def _chat(self, request: Request) -> JSONResponse:
        return await self._serve(request, _check_chat_messages, self._completion_body)

    async def _serve(
        self,
        request: Request,
        validate: Callable[[dict[str, Any]], str | None],
        render: Callable[[dict[str, Any], Step], dict[str, Any]],
    ) -> JSONResponse:
        body = await request.json()
        with self._lock:
            self.received.append(Received(request.url.path, dict(request.headers), body))
            step = self.steps.popleft() if self.steps else None
        if step is None:
            return self._refuse(500, f"request {len(self.received)} is past the end of the script")
        invalid = validate(body)
        if invalid is not None:
            return self._refuse(400, f"{request.url.path}: {invalid}")
        if step.expect is not None:
            try:
                step.expect(body)
            except AssertionError as failure:
                return self._refuse(400, f"expectation of {step.describe()} failed: {failure}")
        if step.seconds:
            await _hold(request, step.seconds)
        if step.status != 200:
            return JSONResponse(
                step.body if step.body is not None else _error_body(step.status),
                status_code=step.status,
                headers=dict(step.headers),
            )
        return JSONResponse(render(body, step), headers={"x-request-id": _id("req")})

    def _refuse(self, status: int, problem: str) -> JSONResponse:
        with self._lock:
            self.problems.append(problem)
        # 400 so the client does not retry and the test fails fast on the real problem.
        return JSONResponse(_error_body(status, f"ScriptedModel: {problem}"), status_code=status)

    def _call_ids(self, step: Step) -> list[str]:
        ids = []
        with self._lock:
            for scripted in step.calls:
                self._calls += 1
                ids.append(scripted.call_id or f"call_{self._calls}")
        return ids

    def _response_body(self, request: dict[str, Any], step: Step) -> dict[str, Any]:
        output: list[dict[str, Any]] = []
        if step.text is not None:
            output.append(
                {
                    "type": "message",
                    "id": _id("msg"),
                    "role": "assistant",
                    "status": "completed",
                    "content": [
                        {
                            "type": "output_text",
                            "text": step.text,
                            "annotations": [],
                            "logprobs": [],
                        }
                    ],
                }
            )
        for scripted, call_id in zip(step.calls, self._call_ids(step), strict=True):
            output.append(
                {
                    "type": "function_call",
                    "id": _id("fc"),
                    "call_id": call_id,
                    "name": scripted.name,
                    "arguments": scripted.arguments,
                    "status": "completed",
                }
            )
        input_tokens, output_tokens = step.usage or _estimate(request, output)
        now = time.time()
        return {
            "id": _id("resp"),
            "object": "response",
            "created_at": now,
            "completed_at": now,
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"),
            "model": request.get("model", self.model),
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

    def _completion_body(self, request: dict[str, Any], step: Step) -> dict[str, Any]:
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
                for scripted, call_id in zip(step.calls, self._call_ids(step), strict=True)
            ]
        input_tokens, output_tokens = step.usage or _estimate(request, [message])
        return {
            "id": _id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", self.model),
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


def conversation_text(body: dict[str, Any]) -> str:
    """Every text, argument and tool output in a request of either format, one per line.

    For expectations such as "the second turn still carries the first event".
    """
    texts: list[str] = [str(body.get("instructions") or "")]
    entries = body.get("input", body.get("messages", []))
    if isinstance(entries, str):
        entries = [{"content": entries}]
    for entry in entries:
        content = entry.get("content")
        if isinstance(content, list):
            texts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
        elif content is not None:
            texts.append(str(content))
        for key in ("arguments", "output"):
            if key in entry:
                texts.append(str(entry[key]))
        for tool_call in entry.get("tool_calls") or []:
            texts.append(str(tool_call["function"]["arguments"]))
    return "\n".join(t for t in texts if t)


def call_ids(body: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The ids of the function calls in a request of either format, and of their outputs.

    For expectations such as "no call id repeats, and every output names its call".
    """
    calls: list[str] = []
    outputs: list[str] = []
    for entry in body.get("input", body.get("messages", [])):
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "function_call":
            calls.append(entry["call_id"])
        elif entry.get("type") == "function_call_output":
            outputs.append(entry["call_id"])
        calls.extend(tool_call["id"] for tool_call in entry.get("tool_calls") or [])
        if entry.get("role") == "tool":
            outputs.append(entry["tool_call_id"])
    return calls, outputs


# --- what the real APIs refuse, refused here too


def _check_responses_input(body: dict[str, Any]) -> str | None:
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


def _check_chat_messages(body: dict[str, Any]) -> str | None:
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


def _error_body(status: int, message: str | None = None) -> dict[str, Any]:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "server_error")
    return {
        "error": {
            "message": message or f"scripted {status}",
            "type": kind,
            "param": None,
            "code": "rate_limit_exceeded" if status == 429 else None,
        }
    }


async def _hold(request: Request, seconds: float) -> None:
    # Stop early once the client has hung up, so the server can shut down promptly.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


def _estimate(request: dict[str, Any], output: list[dict[str, Any]]) -> Usage:
    # About four characters a token: plausible numbers when a test does not script usage.
    return max(1, len(json.dumps(request)) // 4), max(1, len(json.dumps(output)) // 4)


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"
