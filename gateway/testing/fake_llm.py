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
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.assistant.models import ModelProfile
from gateway.testing import llm_chat, llm_responses
from gateway.testing.llm_containers import Containers
from gateway.testing.llm_files import VectorStores
from gateway.testing.llm_script import (
    Expect,
    ScriptedCall,
    Step,
    Usage,
    answer,
    call,
    code,
    delay,
    error,
    new_id,
    turn,
)
from gateway.testing.server import serve_in_thread

__all__ = [
    "Expect",
    "Received",
    "ScriptedCall",
    "ScriptedModel",
    "Step",
    "Usage",
    "answer",
    "call",
    "call_ids",
    "code",
    "conversation_text",
    "delay",
    "error",
    "turn",
]


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
        # Files and vector stores, for hosted knowledge collections and `file_search`.
        self.vector_stores = VectorStores()
        # Containers, for the hosted code_interpreter: what its code makes, and downloads.
        self.containers = Containers()
        self.app = Starlette(
            routes=[
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                *self.vector_stores.routes(),
                *self.containers.routes(),
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
        return await self._serve(request, llm_responses.check_input, llm_responses.response_body)

    async def _chat(self, request: Request) -> JSONResponse:
        return await self._serve(request, llm_chat.check_messages, llm_chat.completion_body)

    async def _serve(
        self,
        request: Request,
        validate: Callable[[dict[str, Any]], str | None],
        render: Callable[[dict[str, Any], Step, list[str], str], dict[str, Any]],
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
        cited: list[tuple[str, str, str]] = []
        for ran in step.ran:
            container = llm_responses.container_of(body) or ""
            made = self.containers.produce(container, ran.files)
            if isinstance(made, str):
                return self._refuse(400, f"{step.describe()}: {made}")
            # A name the code did not write is cited by an id the container does not have.
            cited += [(container, made.get(name, f"cfile_no_{name}"), name) for name in ran.cite]
        if cited:
            step = replace(step, container_citations=tuple(cited))
        rendered = render(body, step, self._call_ids(step), self.model)
        return JSONResponse(rendered, headers={"x-request-id": new_id("req")})

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
