"""A loopback downstream that counts side effects by idempotency key, and can be made to fail
(an outage answering 503) or to answer slowly: what outage, shutdown and chaos tests call."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.testing.server import serve_in_thread


class CountingDownstream:
    """POST /effect: a side effect, counted under its `Idempotency-Key` when answered 2xx.

    `outage(seconds)` makes it answer 503 for that long (from now); `delay` is how long each
    call takes. `effects` counts the calls answered 2xx per key; `attempts` every call;
    `keys_by_event` the keys of the effects per `event` named in a JSON body.
    """

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.effects: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.keys_by_event: dict[str, set[str]] = {}
        self.refused = 0
        self.in_flight = 0
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/effect", self.effect, methods=["POST"]),
                Route("/counts", self.counts, methods=["GET"]),
            ]
        )

    def outage(self, seconds: float) -> None:
        self._down_until = time.monotonic() + seconds

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    async def effect(self, request: Request) -> Response:
        key = request.headers.get("idempotency-key", "")
        body = await request.body()
        with self._lock:
            self.attempts[key] += 1
        if self.down:
            with self._lock:
                self.refused += 1
            return PlainTextResponse("down for maintenance", status_code=503)
        self.in_flight += 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        with self._lock:
            self.effects[key] += 1
            event = _event_of(body)
            if event is not None:
                self.keys_by_event.setdefault(event, set()).add(key)
        return JSONResponse({"done": key})

    async def counts(self, request: Request) -> Response:
        """What happened so far, for a harness in another process (bench/chaos)."""
        with self._lock:
            effects = dict(self.effects)
            by_event = {event: sorted(keys) for event, keys in self.keys_by_event.items()}
        return JSONResponse({"effects": effects, "by_event": by_event, "refused": self.refused})


@contextmanager
def counting_downstream() -> Iterator[tuple[CountingDownstream, str]]:
    """A `CountingDownstream` on loopback (uvicorn in a thread), and its URL."""
    server = CountingDownstream()
    with serve_in_thread(server.app) as url:
        yield server, url


def _event_of(body: bytes) -> str | None:
    try:
        found = json.loads(body).get("event")
    except (ValueError, AttributeError):
        return None
    return str(found) if found is not None else None
