"""A loopback GitHub: one webhook's deliveries, as GitHub's REST API shows and redelivers them.

`send` makes GitHub deliver an event to the gateway (or fail to, while it is `down`), `send_body`
an event whose body is given as the bytes to send; `GET .../deliveries` lists them newest first
by cursor (`Link: <...>; rel="next"`), `GET .../deliveries/{id}` shows one with its request (the
payload being the very bytes sent, inside the JSON answer), `POST .../deliveries/{id}/attempts`
queues a redelivery that `send_redeliveries` sends. `fail_next` answers the next API call
with an error (a 429 or 403 rate limit, a 500) once.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.config import SourceConfig
from gateway.ingest.provider import PROVIDERS


class FakeGitHub:
    def __init__(self, secret: str, token: str, hook: str = "/repos/acme/shop/hooks/123") -> None:
        self.token = token
        self.hook = hook
        self.signer = PROVIDERS["github"](SourceConfig(provider="github", secret=secret))
        self.deliveries: list[dict[str, Any]] = []  # oldest first
        self.bodies: dict[int, bytes] = {}  # each delivery's body, by delivery id
        self.requests: list[tuple[str, str]] = []  # (method, path?query) of each API call
        self.redeliveries: list[int] = []  # delivery ids asked again, not yet sent
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.slow: list[float] = []  # seconds the next API calls wait before answering
        # Called once at the next list call, before it answers (a delivery racing a run).
        self.during_list: Callable[[], object] | None = None
        self.target = ""  # the gateway's hook URL
        self.down = False  # the gateway cannot be reached: deliveries fail
        # Deliveries are made an hour ago onwards, a second apart (within a first run's lookback).
        self.clock = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        base = f"{hook}/deliveries"
        self.app = Starlette(
            routes=[
                Route(base, self.list, methods=["GET"]),
                Route(base + "/{id:int}", self.get, methods=["GET"]),
                Route(base + "/{id:int}/attempts", self.attempt, methods=["POST"]),
            ]
        )

    # -- what GitHub does on its own -----------------------------------------------------------

    def send(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Deliver a new event (a new guid) to `target`, recording how it went."""
        return self.send_body(event, orjson.dumps(payload))

    def send_body(self, event: str, body: bytes) -> dict[str, Any]:
        """Deliver a new event whose body is `body`, as formatted (spaces, escapes)."""
        self.clock += timedelta(seconds=1)
        return self._deliver(str(uuid.uuid4()), event, body, redelivery=False)

    def send_redeliveries(self) -> list[dict[str, Any]]:
        """Send every redelivery asked for, as GitHub does shortly after answering 202."""
        with self._lock:
            asked, self.redeliveries = self.redeliveries, []
        found = (self._find(delivery_id) for delivery_id in asked)
        return [self.send_again(old) for old in found if old is not None]

    def send_again(self, delivery: dict[str, Any]) -> dict[str, Any]:
        """Redeliver `delivery` now (as someone clicking "Redeliver" in GitHub's settings)."""
        body = self.bodies[delivery["id"]]
        return self._deliver(delivery["guid"], delivery["event"], body, redelivery=True)

    def fail_next(self, status: int, headers: dict[str, str] | None = None) -> None:
        """Answer the next API call with `status` (and `headers`), once."""
        self.failures.append((status, headers or {}))

    def _deliver(self, guid: str, event: str, body: bytes, *, redelivery: bool) -> dict[str, Any]:
        headers = {
            "Accept": "*/*",
            "User-Agent": "GitHub-Hookshot/loopback",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": guid,
            "X-GitHub-Hook-ID": self.hook.rsplit("/", 1)[-1],
            "Content-Type": "application/json",
        }
        headers |= self.signer.sign(body, headers, self.clock.timestamp())
        status_code = 502
        if not self.down and self.target:
            try:
                answer = httpx2.post(self.target, content=body, headers=headers, timeout=30)
                status_code = answer.status_code
            except httpx2.HTTPError:
                status_code = 502
        delivery = {
            "id": next(self._ids),
            "guid": guid,
            "delivered_at": self.clock.isoformat().replace("+00:00", "Z"),
            "redelivery": redelivery,
            "duration": 0.01,
            "status": "OK" if 200 <= status_code < 300 else f"Invalid HTTP Response: {status_code}",
            "status_code": status_code,
            "event": event,
            "action": orjson.loads(body).get("action"),
            "installation_id": None,
            "repository_id": 1,
            "request": {"headers": headers, "payload": orjson.loads(body)},
            "response": {"headers": {}, "payload": ""},
        }
        with self._lock:
            self.deliveries.append(delivery)
            self.bodies[delivery["id"]] = body
        return delivery

    def _find(self, delivery_id: int) -> dict[str, Any] | None:
        return next((d for d in self.deliveries if d["id"] == delivery_id), None)

    # -- the REST API ----------------------------------------------------------------------------

    def slow_next(self, seconds: float) -> None:
        """Answer the next API call only after `seconds`, once."""
        self.slow.append(seconds)

    async def _refused(self, request: Request) -> Response | None:
        self.requests.append((request.method, request.url.path + "?" + request.url.query))
        if self.slow:
            await asyncio.sleep(self.slow.pop(0))
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        if self.failures:
            status, headers = self.failures.pop(0)
            return JSONResponse({"message": "try later"}, status_code=status, headers=headers)
        return None

    async def list(self, request: Request) -> Response:
        if (refused := await self._refused(request)) is not None:
            return refused
        if self.during_list is not None:
            racing, self.during_list = self.during_list, None
            await asyncio.to_thread(racing)
        per_page = int(request.query_params.get("per_page", "30"))
        start = int(request.query_params.get("cursor", "0"))
        newest_first = [_summary(d) for d in reversed(self.deliveries)]
        page = newest_first[start : start + per_page]
        headers = {}
        if start + per_page < len(newest_first):
            nxt = f"{request.base_url}{self.hook.lstrip('/')}/deliveries"
            headers["link"] = f'<{nxt}?per_page={per_page}&cursor={start + per_page}>; rel="next"'
        return JSONResponse(page, headers=headers)

    async def get(self, request: Request) -> Response:
        if (refused := await self._refused(request)) is not None:
            return refused
        delivery = self._find(int(request.path_params["id"]))
        if delivery is None:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        # GitHub shows the payload it sent as it sent it: the body's bytes inside the answer.
        shown = {**delivery, "request": {**delivery["request"], "payload": _PAYLOAD}}
        raw = orjson.dumps(shown).replace(orjson.dumps(_PAYLOAD), self.bodies[delivery["id"]], 1)
        return Response(raw, media_type="application/json")

    async def attempt(self, request: Request) -> Response:
        if (refused := await self._refused(request)) is not None:
            return refused
        delivery_id = int(request.path_params["id"])
        if self._find(delivery_id) is None:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        with self._lock:
            self.redeliveries.append(delivery_id)
        return JSONResponse({}, status_code=202)


# Where a delivery's body goes in the JSON answer showing it.
_PAYLOAD = "\x00payload\x00"


def _summary(delivery: dict[str, Any]) -> dict[str, Any]:
    """A delivery as the list shows it: without its request and response."""
    return {k: v for k, v in delivery.items() if k not in ("request", "response")}
