"""What both model backends share: the OpenAI client of a profile, and retries with backoff that
honour the server's Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx2
import openai
import orjson
import structlog

from gateway import backoff
from gateway.assistant.models import ModelProfile
from gateway.assistant.pool import model_http_client
from gateway.assistant.turn import Item, ModelError, Turn

log = structlog.get_logger("gateway.assistant")

Sleep = Callable[[float], Awaitable[None]]

# Status codes worth another try: timeout, lock conflict, rate limit, and the server's own faults.
RETRYABLE_STATUS = frozenset({408, 409, 429})
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0
# A server asking for a longer pause than this gets it from the worker (which re-queues the
# run), not from a worker slot sleeping here.
RETRY_AFTER_MAX = 60.0


class OpenAIBackend:
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
        if http_client is None:
            http_client = model_http_client()
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
                retry_after = backoff.retry_after(error.response.headers)
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

    async def answer(self, path: str, body: Item, read: Callable[[Item], Turn]) -> Turn:
        """`body` posted to `path`, its answer read by `read` from plain JSON.

        The client still sends the request (auth, timeouts, status errors); only its response
        models are left out: building them was most of a turn's CPU, and the loop needs a few
        fields. An answer `read` cannot take apart (KeyError, TypeError, ...) is a
        ModelError that says what was wrong, not a crash of the run.
        """
        # Encoded here with orjson, the whole conversation in C (the client's encoder is the
        # standard library's); sent as the client's JSON would be, with its Content-Type.
        raw: bytes = await self.client.post(path, content=orjson.dumps(body), cast_to=bytes)
        try:
            answer = orjson.loads(raw)
            if not isinstance(answer, dict):
                raise TypeError(f"a JSON {type(answer).__name__}, not an object")
            return read(answer)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # JSONDecodeError too
            problem = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ModelError(
                f"model {self.profile.model}: malformed answer from {path}: {problem}",
                retryable=False,
            ) from exc

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


def string_at(item: Item, key: str) -> str:
    """`item[key]`, which must be a string (TypeError if not, KeyError if missing)."""
    value = item[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is a {type(value).__name__}, not a string")
    return value


def list_at(item: Item, key: str) -> list[Item]:
    """`item[key]`, which must be a list (TypeError if not, KeyError if missing)."""
    value = item[key]
    if not isinstance(value, list):
        raise TypeError(f"{key} is a {type(value).__name__}, not a list")
    return value


def _backoff(attempt: int) -> float:
    return backoff.backoff(attempt, base=BACKOFF_BASE, ceiling=BACKOFF_MAX)
