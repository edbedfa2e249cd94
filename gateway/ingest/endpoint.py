"""`POST /hooks/{source}`: verify, store, and only then answer 202.

A raw ASGI endpoint: it reads the body itself so an oversized one is refused before it is read,
and keeps the hot path to verify → parse once → insert → commit → answer. Duplicates are found
by the provider's dedup key, read from signed material only, never by a delivery-id header.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from starlette.types import Receive, Scope, Send

from gateway.config import Config
from gateway.errors import (
    BodyTooLarge,
    EventDoesNotFit,
    MalformedPayload,
    RejectedDelivery,
    SignatureInvalid,
    StoreUnavailable,
    UnknownSource,
    UnsupportedMediaType,
)

# Defined in gateway.errors (the whole tree in one module), imported from here too.
from gateway.errors import ClientGone as ClientGone
from gateway.ingest.provider import PROVIDERS, Provider
from gateway.metrics import Metrics
from gateway.nesting import check_depth
from gateway.retention.disk import DiskWatch
from gateway.store import NewEvent, Store

log = structlog.get_logger("gateway.ingest")

STATUS: dict[type[RejectedDelivery], int] = {
    SignatureInvalid: 401,
    UnknownSource: 404,
    BodyTooLarge: 413,
    UnsupportedMediaType: 415,
    MalformedPayload: 400,
}
# Credentials a sender may put in headers; never stored, whatever the provider.
ALWAYS_SECRET = frozenset({"authorization", "proxy-authorization", "cookie"})


class IngestEndpoint:
    def __init__(
        self,
        config: Config,
        store: Store,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        disk: DiskWatch | None = None,
    ) -> None:
        self.disk = disk
        self.sources: dict[str, Provider] = {
            name: PROVIDERS[source.provider](source) for name, source in config.sources.items()
        }
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.max_body = config.max_body_bytes
        self.max_depth = config.max_json_depth
        # The metric children of each (source, status), looked up once: `labels()` takes a
        # lock and builds a key on every call, a cost measured on the request path (py-spy).
        # Bounded: the configured sources and "unknown", times a handful of statuses.
        self._answered: dict[tuple[str, int], Any] = {}
        self._timed: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name: str = scope["path_params"]["source"]
        started = time.perf_counter()
        label = name if name in self.sources else "unknown"
        try:
            status, answer = await self._handle(name, scope, receive)
        except ClientGone:
            return
        except RejectedDelivery as exc:
            status = STATUS.get(type(exc), 400)
            answer = {"error": exc.reason, "detail": exc.detail}
            self.metrics.rejections.labels(label, exc.reason).inc()
            log.warning(
                "ingest.rejected",
                source=name,
                reason=exc.reason,
                detail=exc.detail,
                status=status,
                client=_client(scope),
            )
        except StoreUnavailable as exc:
            status, answer = 503, {"error": "store_unavailable", "detail": "try again later"}
            self.metrics.rejections.labels(label, "store_unavailable").inc()
            log.error("ingest.store_unavailable", source=name, error=str(exc))
        else:
            timed = self._timed.get(label)
            if timed is None:
                timed = self._timed[label] = self.metrics.ingest_seconds.labels(label)
            timed.observe(time.perf_counter() - started)
        answered = self._answered.get((label, status))
        if answered is None:
            answered = self.metrics.requests.labels(label, str(status))
            self._answered[(label, status)] = answered
        answered.inc()
        await _respond(send, status, answer)

    async def _handle(
        self, name: str, scope: Scope, receive: Receive
    ) -> tuple[int, dict[str, Any]]:
        provider = self.sources.get(name)
        if provider is None:
            raise UnknownSource(f"no source named {name!r}")
        if self.disk is not None:
            self.disk.check()  # below the free-disk floor: 503, the sender retries later
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = await self._read_body(headers, receive)
        provider.verify(headers, body, self.clock())
        content_type = headers.get("content-type", "")
        if provider.json_body and content_type and "json" not in content_type.lower():
            raise UnsupportedMediaType(f"expected a JSON body, got {content_type!r}")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedPayload(f"body is not valid JSON: {exc}") from None
        check_depth(payload, self.max_depth, body)
        challenge = provider.challenge(payload)
        if challenge is not None:
            return 200, challenge
        new = NewEvent(
            source=name,
            provider=provider.name,
            type=provider.event_type(headers, payload),
            delivery_id=provider.delivery_id(headers, payload, body),
            headers=kept_headers(provider, headers),
            body=body,
            received_at=datetime.now(UTC),
            dedup_key=provider.dedup_key(headers, payload, body),
        )
        try:
            stored = await self.store.events.add(new)
        except EventDoesNotFit as exc:
            raise MalformedPayload(str(exc)) from None
        if stored.duplicate:
            # A replay (stored content, another delivery id) is answered like a redelivery:
            # the replayer learns nothing, a sender would retry nothing; only we tell them apart.
            replayed = stored.replayed
            (self.metrics.replays if replayed else self.metrics.duplicates).labels(name).inc()
            (log.warning if replayed else log.info)(
                "ingest.replayed" if replayed else "ingest.duplicate",
                source=name,
                event_id=stored.id,
                delivery_id=stored.event.delivery_id,
                stored_delivery_id=stored.stored_delivery_id,
                client=_client(scope),
            )
            return 200, {"id": stored.id, "duplicate": True}
        log.debug("ingest.stored", source=name, event_id=stored.id, type=stored.event.type)
        late = provider.late_by(headers, self.clock())
        if late is not None:  # stored all the same: only flagged, for the operator to see
            self.metrics.stale_retries.labels(name).inc()
            log.warning("ingest.stale_retry", source=name, event_id=stored.id, late_by=round(late))
        return 202, {"id": stored.id, "duplicate": False}

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise BodyTooLarge(f"body of {declared} bytes exceeds the {self.max_body}-byte limit")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge(f"body exceeds the {self.max_body}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def kept_headers(provider: Provider, headers: dict[str, str]) -> dict[str, str]:
    """The headers of a delivery the store keeps: every one but those carrying credentials.
    Reconciliation keeps a fetched delivery's headers by this too."""
    hidden = ALWAYS_SECRET | provider.secret_headers
    return {k: v for k, v in headers.items() if k not in hidden}


async def _respond(send: Send, status: int, answer: dict[str, Any]) -> None:
    body = orjson.dumps(answer)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 503:
        headers.append((b"retry-after", b"5"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None
