"""Embedding passages and queries through any OpenAI-compatible `/v1/embeddings` endpoint
(OpenAI, Ollama, vLLM, LiteLLM), named by a model profile: batched, retried, counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.assistant.models import ModelProfile, cost
from gateway.errors import EmbeddingError

if TYPE_CHECKING:
    import openai

# Inputs per request: OpenAI takes up to 2,048, local servers often far fewer at a time.
BATCH = 64


@dataclass
class Usage:
    """Tokens and money spent on embeddings, added up over calls."""

    tokens: int = 0
    cost: float = 0.0
    requests: int = 0


def client_of(
    profile: ModelProfile, environ: Mapping[str, str] | None = None
) -> openai.AsyncOpenAI:
    """The profile's OpenAI client, with the client's own retries (its backoff honours
    Retry-After) as the profile sets them."""
    # Imported here, by a gateway that embeds: the OpenAI client is tens of MB resident.
    import openai

    return openai.AsyncOpenAI(
        api_key=profile.api_key(environ),
        base_url=profile.base_url,
        timeout=profile.timeout,
        max_retries=profile.max_retries,
    )


class Embedder:
    """The embeddings endpoint of one model profile; `aclose()` it when done."""

    def __init__(
        self,
        profile: ModelProfile,
        *,
        environ: Mapping[str, str] | None = None,
        batch: int = BATCH,
    ) -> None:
        self.profile = profile
        self.batch = batch
        self.usage = Usage()
        self.client = client_of(profile, environ)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order, `batch` texts per request."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch):
            vectors += await self._request(texts[start : start + self.batch])
        return vectors

    async def _request(self, texts: list[str]) -> list[list[float]]:
        import openai

        try:
            answer = await self.client.embeddings.create(
                model=self.profile.model, input=texts, encoding_format="float"
            )
        except openai.APIError as exc:
            raise EmbeddingError(f"embeddings {self.profile.model}: {exc.message}") from exc
        if len(answer.data) != len(texts):
            raise EmbeddingError(
                f"embeddings {self.profile.model}: {len(answer.data)} vectors for "
                f"{len(texts)} inputs"
            )
        tokens = answer.usage.prompt_tokens if answer.usage else 0
        self.usage.tokens += tokens
        self.usage.cost += cost(self.profile, tokens, 0)
        self.usage.requests += 1
        return [list(item.embedding) for item in sorted(answer.data, key=lambda d: d.index)]

    async def aclose(self) -> None:
        await self.client.close()
