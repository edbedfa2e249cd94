"""Model backends: one assistant turn over the Responses API or Chat Completions.

Both speak the same conversation form (Responses input items) to the caller, so the tool loop
and the stored threads do not care which wire format a model profile uses.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import httpx2
import openai
import structlog
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from gateway.assistant.models import ModelProfile
from gateway.errors import GatewayError

log = structlog.get_logger("gateway.assistant")

Item = dict[str, Any]
Sleep = Callable[[float], Awaitable[None]]

# Status codes worth another try: timeout, lock conflict, rate limit, and the server's own faults.
RETRYABLE_STATUS = frozenset({408, 409, 429})
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0
# A server asking for a longer pause than this gets it from the worker (which re-queues the
# run), not from a worker slot sleeping here.
RETRY_AFTER_MAX = 60.0


class ModelError(GatewayError):
    """A model request failed. `retryable` says whether the run may try again later.

    Raised after the backend's own retries are spent (retryable: the run may be retried as a
    whole, after `retry_after` seconds if the server said), or at once for a request the server
    refuses for good (bad request, wrong key, unknown model: not retryable).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


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
            _function_call_item(next(renamed)) if i.get("type") == "function_call" else i
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


class _OpenAIBackend:
    """Shared by both backends: the client, and retries with backoff that honour Retry-After."""

    def __init__(
        self,
        profile: ModelProfile,
        *,
        sleep: Sleep = asyncio.sleep,
        environ: Mapping[str, str] | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.profile = profile
        self._sleep = sleep
        # A shared http_client belongs to the caller, who closes it.
        self._owns_client = http_client is None
        # The client's own retries are off: ours are logged, honour a Retry-After longer than
        # the client would, give a very long one back to the worker, and work alike for both APIs.
        self.client = openai.AsyncOpenAI(
            api_key=profile.api_key(environ),
            base_url=profile.base_url,
            timeout=profile.timeout,
            max_retries=0,
            http_client=http_client,
        )

    async def turn(self, instructions: str, items: list[Item], tools: list[Item]) -> Turn:
        attempt = 0
        while True:
            try:
                turn = await self._turn(instructions, items, tools)
                return turn.with_unique_call_ids(items)
            except openai.APIStatusError as error:
                status = error.status_code
                retryable = status in RETRYABLE_STATUS or status >= 500
                retry_after = _retry_after(error.response.headers)
                if (
                    not retryable
                    or attempt >= self.profile.max_retries
                    or (retry_after is not None and retry_after > RETRY_AFTER_MAX)
                ):
                    raise ModelError(
                        self._describe(error.message, attempt),
                        retryable=retryable,
                        status=status,
                        retry_after=retry_after,
                    ) from error
                delay = retry_after if retry_after is not None else _backoff(attempt)
                reason = error.message
            except openai.APIConnectionError as error:  # timeouts included
                if attempt >= self.profile.max_retries:
                    raise ModelError(
                        self._describe(error.message, attempt), retryable=True
                    ) from error
                delay = _backoff(attempt)
                reason = error.message
            except openai.APIError as error:  # an answer that does not parse
                raise ModelError(self._describe(error.message, attempt), retryable=False) from error
            log.warning(
                "model request retried",
                model=self.profile.model,
                attempt=attempt + 1,
                delay=round(delay, 3),
                error=reason,
            )
            await self._sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.close()

    async def _turn(self, instructions: str, items: list[Item], tools: list[Item]) -> Turn:
        raise NotImplementedError

    def _describe(self, message: str, attempt: int) -> str:
        tries = f" (after {attempt + 1} attempts)" if attempt else ""
        return f"model {self.profile.model}: {message}{tries}"

    def _options(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.profile.temperature is not None:
            extra["temperature"] = self.profile.temperature
        return extra


class ResponsesBackend(_OpenAIBackend):
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
                + _responses_problem(response),
                retryable=response.status == "failed",
            )
        return _turn_from_response(response)


class ChatBackend(_OpenAIBackend):
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
        return _turn_from_completion(completion)


BACKENDS: dict[str, type[_OpenAIBackend]] = {
    "responses": ResponsesBackend,
    "chat": ChatBackend,
}


def make_backend(
    profile: ModelProfile,
    *,
    sleep: Sleep = asyncio.sleep,
    environ: Mapping[str, str] | None = None,
    http_client: httpx2.AsyncClient | None = None,
) -> Backend:
    """The backend the profile's `api` names; raises ConfigError if its key is missing."""
    return BACKENDS[profile.api](profile, sleep=sleep, environ=environ, http_client=http_client)


# --- Responses API -> conversation items


def _turn_from_response(response: Response) -> Turn:
    texts: list[str] = []
    calls: list[Call] = []
    items: list[Item] = []
    for output in response.output:
        # Output ids are left out: with store=False the server cannot look them up again.
        if output.type == "function_call":
            call = Call(output.call_id, output.name, output.arguments)
            calls.append(call)
            items.append(_function_call_item(call))
        elif output.type == "message":
            text = "".join(
                part.text if part.type == "output_text" else part.refusal for part in output.content
            )
            if text:
                texts.append(text)
                items.append({"type": "message", "role": "assistant", "content": text})
    usage = response.usage
    return Turn(
        text="\n\n".join(texts) or None,
        calls=calls,
        items=items,
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        model=str(response.model),
        response_id=response.id,
    )


def _responses_problem(response: Response) -> str:
    if response.error is not None:
        return f"{response.error.code}: {response.error.message}"
    if response.incomplete_details is not None:
        return str(response.incomplete_details.reason)
    return "no reason given"


# --- Chat Completions <-> conversation items


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


def _turn_from_completion(completion: ChatCompletion) -> Turn:
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
        items.append(_function_call_item(call))
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


def new_call_id(taken: Collection[str] = ()) -> str:
    """A call id for a call the model sent without one, or with one already used."""
    while True:
        # The form OpenAI uses, short: some compatible servers limit the length of an id.
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        if call_id not in taken:
            return call_id


def _function_call_item(call: Call) -> Item:
    return {
        "type": "function_call",
        "call_id": call.call_id,
        "name": call.name,
        "arguments": call.arguments,
    }


def _text(item: Item) -> str:
    content = item.get("content", "")
    if isinstance(content, str):
        return content
    # Responses content parts: input_text / output_text carry `text`.
    return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))


# --- retries


def _backoff(attempt: int) -> float:
    """Exponential, with jitter so that many runs throttled together do not return together."""
    ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)


def _retry_after(headers: httpx2.Headers) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, or `retry-after` (seconds or date)."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
