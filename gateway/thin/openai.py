"""OpenAI platform webhooks (`response.completed`, `batch.completed`, ...): the body names the
object by id only (`data.id`); the response, batch or fine-tuning job is fetched through the
`openai` library, which does not retry by itself (the worker does, `gateway.thin.fetching`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import openai
import orjson

from gateway.backoff import retry_after
from gateway.errors import FetchError
from gateway.ingest.providers.standard import StandardSettings
from gateway.store import Event
from gateway.thin.fetcher import FETCH_TIMEOUT_SECONDS, bounded, retryable

Retrieve = Callable[[openai.AsyncOpenAI, str], Awaitable[Any]]
# The objects an event type's prefix names, and how to retrieve one by id. Other events
# (`eval.run.*`, whose run needs its eval's id too; `realtime.call.incoming`) route as sent.
RETRIEVE: dict[str, Retrieve] = {
    "response.": lambda client, id: client.responses.retrieve(id),
    "batch.": lambda client, id: client.batches.retrieve(id),
    "fine_tuning.job.": lambda client, id: client.fine_tuning.jobs.retrieve(id),
}


def _retriever(payload: Any) -> tuple[Retrieve, str] | None:
    if not isinstance(payload, dict) or payload.get("object") != "event":
        return None
    data, kind = payload.get("data"), str(payload.get("type", ""))
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        return None
    found = next((get for prefix, get in RETRIEVE.items() if kind.startswith(prefix)), None)
    return (found, data["id"]) if found is not None else None


class OpenAIFetcher:
    """Fetches an OpenAI webhook source's objects with its `api_key`, from its `api_base`."""

    def __init__(self, settings: StandardSettings) -> None:
        self.client = openai.AsyncOpenAI(
            api_key=settings.api_key,
            base_url=settings.api_base,
            max_retries=0,
            timeout=FETCH_TIMEOUT_SECONDS,
        )

    def is_thin(self, payload: Any) -> bool:
        return _retriever(payload) is not None

    async def fetch(self, event: Event) -> Any:
        found = _retriever(orjson.loads(event.body))
        if found is None:
            raise FetchError(event.id, "not an OpenAI event naming an object", retryable=False)
        retrieve, object_id = found
        try:
            fetched = await retrieve(self.client, object_id)
        except openai.APIStatusError as exc:
            status, headers = exc.status_code, exc.response.headers
            message = f"OpenAI answered {status}: {exc.message}"
            raise FetchError(
                event.id, message, retryable=retryable(status), retry_after=retry_after(headers)
            ) from exc
        except openai.APIConnectionError as exc:  # unreachable, or the timeout passed
            message = f"OpenAI could not be reached: {exc.message}"
            raise FetchError(event.id, message, retryable=True) from exc
        return bounded(event.id, fetched.model_dump(mode="json"))

    async def aclose(self) -> None:
        await self.client.close()
