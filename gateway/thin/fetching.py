"""The worker's part for thin events: hold them back from routing, fetch their objects once,
retry under the retry policy, give up at its horizon; the event is routed once fetched.

Nothing here runs on the request path: ingest stores a thin event as any other, and the worker
takes it out of routing (`fetching`) before planning. A fetch is claimed under a lease, so a
replica that dies leaves it to another; the object and the event's return to `pending` are one
commit, so an event is fetched once and routed once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from gateway.config import Config, SourceConfig
from gateway.errors import FetchError
from gateway.metrics import Metrics
from gateway.runs.policy import decide
from gateway.store import Event, Fetch, Store
from gateway.store.notify import wait_for_work
from gateway.thin.fetcher import FETCH_TIMEOUT_SECONDS, Fetcher, Recorded, fetchers

log = structlog.get_logger(__name__)


def stripe_fetcher(source: SourceConfig) -> Fetcher | None:
    """The fetcher of a Stripe source with `fetch: thin`, else None."""
    # The provider's module only in a gateway with such a source (docs/benchmarks.md, memory).
    from gateway.ingest.providers.stripe import StripeSettings

    settings = StripeSettings.model_validate(source.model_extra or {})
    if settings.fetch != "thin":
        return None
    # The stripe library (and `requests` under it) only in a gateway whose source fetches.
    from gateway.thin.stripe import StripeFetcher

    return StripeFetcher(settings)


def openai_fetcher(source: SourceConfig) -> Fetcher | None:
    """The fetcher of a `standard` source with `fetch: openai`, else None."""
    from gateway.ingest.providers.standard import StandardSettings

    settings = StandardSettings.model_validate(source.model_extra or {})
    if settings.fetch != "openai":
        return None
    # The OpenAI client only in a gateway whose source fetches (docs/benchmarks.md, memory).
    from gateway.thin.openai import OpenAIFetcher

    return OpenAIFetcher(settings)


# The providers that can fetch thin events, by name: each makes a source's fetcher, or None
# when the source does not ask for one.
MAKERS: Mapping[str, Callable[[SourceConfig], Fetcher | None]] = {
    "stripe": stripe_fetcher,
    "standard": openai_fetcher,
}
# Fetches claimed (and made concurrently) at once, at most.
CLAIM_MAX = 16
# Only a fallback for fetches another process made due (an operator's replay from the CLI).
FALLBACK_POLL_SECONDS = 1.0


class Fetching:
    """Thin events of the sources with `fetch:`, fetched before they are routed."""

    def __init__(
        self,
        store: Store,
        config: Config,
        metrics: Metrics,
        *,
        wake_routing: Callable[[], None],
        fetchers_by_source: Mapping[str, Fetcher] | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.policy = config.retry_policy
        self.lease = config.worker.lease_seconds
        self.fetchers = dict(
            fetchers_by_source if fetchers_by_source is not None else fetchers(config, MAKERS)
        )
        self._wake_routing = wake_routing
        # A whole fetch, every request of it, within this many seconds (clients bound reads).
        self.timeout = FETCH_TIMEOUT_SECONDS
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def answer_from(self, objects: Mapping[bytes, Any]) -> None:
        """Fetch nothing from any API from now on: answer from `objects` (bodies of events
        fetched before → their objects), as an eval does."""
        self.fetchers = {name: Recorded(f, objects) for name, f in self.fetchers.items()}

    def needs_fetch(self, event: Event) -> bool:
        """A thin event of a source that fetches, not fetched yet."""
        fetcher = self.fetchers.get(event.source)
        if fetcher is None or event.fetched is not None:
            return False
        try:
            return fetcher.is_thin(orjson.loads(event.body))
        except orjson.JSONDecodeError:
            return False

    async def hold(self, events: Sequence[Event]) -> Sequence[Event]:
        """The events to route now: thin ones are taken out of routing to be fetched first."""
        if not self.fetchers:  # the usual case: no source fetches, nothing to look at
            return events
        thin = {event.id for event in events if self.needs_fetch(event)}
        if not thin:
            return events
        await self.store.fetches.begin(sorted(thin))
        self.wake()
        return [event for event in events if event.id not in thin]

    def wake(self) -> None:
        """Fetches are due now (new thin events, or an operator's replay)."""
        self._ready.set()

    def start(self) -> None:
        """Start fetching (when a source fetches), until `aclose`."""
        if self.fetchers and self._task is None:
            self._task = asyncio.create_task(self.run(), name="worker-fetch")

    async def run(self) -> None:
        """Claim due fetches and make them, until cancelled."""
        while True:
            due: datetime | None = None
            try:
                claimed = await self.store.fetches.claim(CLAIM_MAX, self.lease)
                if claimed:
                    await asyncio.gather(*(self.fetch(event, fetch) for event, fetch in claimed))
                    continue
                due = await self.store.fetches.next_due()
            except Exception as exc:  # the store is down: try again after the fallback wait
                log.error("thin.claim_failed", error=str(exc))
            await wait_for_work(self._ready, due, FALLBACK_POLL_SECONDS)

    async def fetch(self, event: Event, fetch: Fetch) -> None:
        """Fetch one claimed event's object; keep it and route the event, or retry, or give up."""
        fetcher = self.fetchers.get(event.source)
        try:
            if fetcher is None:
                gone = f"source {event.source!r} no longer fetches"
                raise FetchError(event.id, gone, retryable=False)
            async with asyncio.timeout(self.timeout):
                found = await fetcher.fetch(event)
        except TimeoutError:
            late = FetchError(event.id, f"no answer within {self.timeout:g} s", retryable=True)
            await self._failed(event, fetch, late)
            return
        except FetchError as exc:
            await self._failed(event, fetch, exc)
            return
        except Exception as exc:  # a bug or an unforeseen library error: retried like an outage
            log.exception("thin.fetch_crashed", event_id=event.id)
            await self._failed(event, fetch, FetchError(event.id, repr(exc), retryable=True))
            return
        if await self.store.fetches.fetched(event.id, found):
            self.metrics.thin_fetches.labels(event.source, "fetched").inc()
            log.info("thin.fetched", event_id=event.id, attempts=fetch.attempts + 1)
            self._wake_routing()

    async def _failed(self, event: Event, fetch: Fetch, exc: FetchError) -> None:
        now = datetime.now(UTC)
        attempt = fetch.attempts + 1
        error = str(exc)
        if exc.retryable:
            decision = decide(
                self.policy,
                attempt=attempt,
                since=fetch.retry_since or now,
                now=now,
                retry_after=exc.retry_after,
            )
            if decision.at is not None:
                await self.store.fetches.retry_later(event.id, decision.at, error)
                self.metrics.thin_fetches.labels(event.source, "retry").inc()
                log.warning("thin.fetch_retry", event_id=event.id, error=error, at=decision.at)
                return
            error = f"{decision.reason}: {error}"
        await self.store.fetches.fail(event.id, error)
        self.metrics.thin_fetches.labels(event.source, "failed").inc()
        log.error("thin.fetch_failed", event_id=event.id, error=error)

    async def aclose(self) -> None:
        """Stop fetching (a fetch in flight is claimed under a lease: it is made again later)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for fetcher in self.fetchers.values():
            with contextlib.suppress(Exception):
                await fetcher.aclose()
