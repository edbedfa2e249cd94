"""A loopback Stripe: an account's events, as `GET /v1/events` lists them, and their webhooks.

`emit` creates an event and delivers it to the gateway (or fails to, while `down`);
`GET /v1/events` lists newest first with `limit`, `starting_after`, `created[gt]` and
`delivery_success`, answering `has_more`. `fail_next` answers the next call with an error once.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx2
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.config import SourceConfig
from gateway.ingest.provider import PROVIDERS


class FakeStripe:
    def __init__(self, secret: str, api_key: str, *, created: int | None = None) -> None:
        self.api_key = api_key
        self.signer = PROVIDERS["stripe"](SourceConfig(provider="stripe", secret=secret))
        self.events: list[dict[str, Any]] = []  # oldest first
        self.delivered: dict[str, bool] = {}
        self.requests: list[dict[str, str]] = []  # the query of each list call
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.target = ""
        self.down = False
        # Called once at the next list call, before it answers (a delivery racing a run).
        self.during_list: Callable[[], object] | None = None
        # Events are made an hour ago onwards, a second apart (within a first run's lookback).
        self.created = created if created is not None else int(time.time()) - 3600
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v1/events", self.list, methods=["GET"])])

    def emit(self, type: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A new event (one second after the previous), delivered unless `down`."""
        self.created += 1
        event: dict[str, Any] = {
            "id": f"evt_loop{next(self._ids):05d}",
            "object": "event",
            "api_version": "2026-11-17.clover",
            "created": self.created,
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type,
        }
        with self._lock:
            self.events.append(event)
        self.delivered[event["id"]] = self.deliver(event)
        return event

    def deliver(self, event: dict[str, Any]) -> bool:
        """Post `event` to the gateway as Stripe signs it; True if it was answered 2xx."""
        if self.down or not self.target:
            return False
        body = orjson.dumps(event, option=orjson.OPT_INDENT_2)  # Stripe pretty-prints
        headers = {"Content-Type": "application/json; charset=utf-8"}
        headers |= self.signer.sign(body, headers, float(event["created"]))
        try:
            answer = httpx2.post(self.target, content=body, headers=headers, timeout=30)
        except httpx2.HTTPError:  # the gateway is stopped
            return False
        return answer.is_success

    def fail_next(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.failures.append((status, headers or {}))

    async def list(self, request: Request) -> Response:
        query = dict(request.query_params)
        self.requests.append(query)
        if self.during_list is not None:
            racing, self.during_list = self.during_list, None
            await asyncio.to_thread(racing)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided")
        if self.failures:
            status, headers = self.failures.pop(0)
            return _error(status, "rate_limit_error", "Too many requests", headers)
        limit = min(int(query.get("limit", "10")), 100)
        found = sorted(self.events, key=lambda e: (e["created"], e["id"]), reverse=True)
        if "created[gt]" in query:
            found = [e for e in found if e["created"] > int(query["created[gt]"])]
        if query.get("delivery_success") == "false":
            found = [e for e in found if not self.delivered.get(e["id"], False)]
        if "starting_after" in query:
            ids = [e["id"] for e in found]
            found = found[ids.index(query["starting_after"]) + 1 :]
        page = found[:limit]
        answer = {"object": "list", "url": "/v1/events", "has_more": len(found) > limit,
                  "data": page}  # fmt: skip
        return JSONResponse(answer)


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"error": {"type": kind, "message": message}}, status_code=status, headers=headers
    )
