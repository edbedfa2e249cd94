"""A deterministic embeddings server on loopback, speaking OpenAI's `/v1/embeddings`.

Its vectors are hashed features of the text: each word, crudely stemmed, and the character
trigrams of each word, folded into `DIMENSIONS` signed buckets. Similar wording gives similar
vectors (a word's other forms share trigrams), which is enough to test ranking and fusion
with the real `openai` client; it is no model of meaning.
"""

from __future__ import annotations

import hashlib
import math
import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.assistant.models import ModelProfile
from gateway.testing.server import serve_in_thread

DIMENSIONS = 256
_WORD = re.compile(r"[^\W_]+")
_SUFFIXES = ("ing", "ed", "es", "s")


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _bucket(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    number = int.from_bytes(digest, "big")
    return number % DIMENSIONS, (1.0 if number >> 63 else -1.0)


def embed(text: str) -> list[float]:
    """The vector of `text`: unit length, the same for the same text on every run."""
    vector = [0.0] * DIMENSIONS
    for word in _WORD.findall(text.lower()):
        stem = _stem(word)
        index, sign = _bucket("w:" + stem)
        vector[index] += 2.0 * sign
        padded = f"<{stem}>"
        for i in range(len(padded) - 2):
            index, sign = _bucket("t:" + padded[i : i + 3])
            vector[index] += 0.5 * sign
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


@dataclass
class EmbeddingServer:
    """`/v1/embeddings` with `embed`; the first `fail` requests are answered 429."""

    model: str = "hashed-trigrams"
    fail: int = 0
    # Inputs of each request received, in order.
    batches: list[list[str]] = field(default_factory=list)
    url: str = ""
    _stack: ExitStack = field(default_factory=ExitStack)

    def profile(self) -> ModelProfile:
        return ModelProfile(api="chat", model=self.model, base_url=self.url + "/v1", max_retries=2)

    def block(self) -> dict[str, Any]:
        """The profile as a `models:` entry of gateway.yaml."""
        return self.profile().model_dump(exclude_defaults=True) | {"api": "chat"}

    async def _embeddings(self, request: Request) -> JSONResponse:
        body = await request.json()
        if self.fail > 0:
            self.fail -= 1
            return JSONResponse(
                {"error": {"message": "slow down", "type": "rate_limit"}},
                status_code=429,
                headers={"retry-after-ms": "10"},
            )
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.batches.append(list(texts))
        tokens = sum(len(_WORD.findall(text)) for text in texts)
        return JSONResponse(
            {
                "object": "list",
                "model": body.get("model", self.model),
                "data": [
                    {"object": "embedding", "index": i, "embedding": embed(text)}
                    for i, text in enumerate(texts)
                ],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def __enter__(self) -> EmbeddingServer:
        app = Starlette(routes=[Route("/v1/embeddings", self._embeddings, methods=["POST"])])
        self.url = self._stack.enter_context(serve_in_thread(app))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.close()
