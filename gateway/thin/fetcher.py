"""What fetching a thin event's object needs of a provider, the limits on what comes back, and
the fetchers of the sources that ask for one (`fetch:` in their settings)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from gateway.config import Config, SourceConfig
from gateway.errors import FetchError
from gateway.nesting import READABLE_DEPTH, deeper_than
from gateway.store import Event

# One fetch (every request it makes, all told) ends after this many seconds: a retryable
# failure. Below the worker's lease (30 s by default), so a fetch never outlives its claim.
FETCH_TIMEOUT_SECONDS = 10.0
# A fetched object larger than this, as JSON, is refused for good (the event fails to fetch):
# the same bound as a webhook body (`ingest.max_body_bytes`' default).
MAX_FETCHED_BYTES = 1024 * 1024
# Answers worth trying again: a timeout, a conflict or lock, too early, the rate limit.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


def retryable(status: int | None) -> bool:
    """Whether a failed fetch may pass later: no answer at all, a 5xx, or a RETRYABLE_STATUSES;
    any other answer (a wrong key, an object that is gone) will not change."""
    return status is None or status in RETRYABLE_STATUSES or status >= 500


class Fetcher(Protocol):
    """A provider's fetching of thin events, for one source (its credentials)."""

    def is_thin(self, payload: Any) -> bool:
        """Whether a delivery's parsed body is a thin event to fetch (others route as sent)."""
        ...

    async def fetch(self, event: Event) -> Any:
        """The event's full object, as JSON-ready data; raises `FetchError`."""
        ...

    async def aclose(self) -> None: ...


class Recorded:
    """A source's fetching answered from objects fetched before, keyed by the event's body:
    an eval replays thin events on what the live gateway fetched, and calls no API."""

    def __init__(self, fetcher: Fetcher, objects: Mapping[bytes, Any]) -> None:
        self.fetcher = fetcher
        self.objects = objects

    def is_thin(self, payload: Any) -> bool:
        return self.fetcher.is_thin(payload)

    async def fetch(self, event: Event) -> Any:
        if event.body not in self.objects:
            message = "its object was never fetched live, and an eval calls no API"
            raise FetchError(event.id, message, retryable=False)
        return self.objects[event.body]

    async def aclose(self) -> None:
        await self.fetcher.aclose()


def bounded(event_id: int, obj: Any) -> Any:
    """`obj` if it fits the limits of a fetched object, else a `FetchError` (not retryable)."""
    size = len(orjson.dumps(obj))
    if size > MAX_FETCHED_BYTES:
        raise FetchError(
            event_id,
            f"the fetched object is {size} bytes; at most {MAX_FETCHED_BYTES} are kept",
            retryable=False,
        )
    if deeper_than(obj, READABLE_DEPTH - 1):  # rules see it one level down, at payload.object
        raise FetchError(
            event_id,
            f"the fetched object is nested deeper than {READABLE_DEPTH - 1} levels",
            retryable=False,
        )
    return obj


def fetchers(
    config: Config, makers: Mapping[str, Callable[[SourceConfig], Fetcher | None]]
) -> dict[str, Fetcher]:
    """A fetcher per source whose provider has a maker and whose settings ask for fetching."""
    found = {}
    for name, source in config.sources.items():
        make = makers.get(source.provider)
        fetcher = make(source) if make is not None else None
        if fetcher is not None:
            found[name] = fetcher
    return found
