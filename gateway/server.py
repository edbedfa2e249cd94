"""The gateway's HTTP server: uvicorn with the limits of the `server:` section at the door.

Uvicorn's httptools protocol bounds neither a request's head nor the time a client may take
to send it; `LimitedProtocol` adds both. `BodyLimit` caps bodies before they are buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, ClassVar

import structlog
import uvicorn
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.config import ServerConfig

log = structlog.get_logger(__name__)


class BodyLimit:
    """A cap on request bodies, on every path except `exempt` (an endpoint with its own cap).

    A body declared longer (`Content-Length`), or one that grows past the cap as it is read,
    makes `receive` raise a 413 `HTTPException` before anything more reaches the application:
    the app that owns the path answers it in its own format (JSON under /api). A client gone
    mid-body (or cut off by `body_timeout`) has nobody to answer: its request ends quietly.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, exempt: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        over = declared.isdigit() and int(declared) > self.max_bytes
        received = 0

        async def capped() -> Message:
            nonlocal received
            if not over:
                message = await receive()
                received += len(message.get("body", b""))
                if received <= self.max_bytes:
                    return message
            raise HTTPException(413, f"request body over the {self.max_bytes}-byte limit")

        with contextlib.suppress(ClientDisconnect):
            await self.app(scope, capped, send)


class LimitedProtocol(HttpToolsProtocol):
    """HTTP/1.1 over httptools, bounding a request head's size and the time head and body take.

    A head is counted from a connection's first byte, or from the end of the previous request,
    to its blank line: beyond `max_header_bytes` the client gets 431. A deadline runs while
    the server waits on the client: `header_timeout` from the connection's start or from its
    previous response to the end of the next head, `body_timeout` from the end of a head to
    the end of its body. A client still sending then gets 408 (just a close if it had sent
    nothing, or if its response has started). Nothing runs while the application works.
    """

    limits: ClassVar[ServerConfig]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bytes of the request head received so far; None from its end to the end of its body.
        self._head_bytes: int | None = 0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        while data and not self.transport.is_closing():
            if self._head_bytes is None:
                super().data_received(data)
                return
            room = self.limits.max_header_bytes - self._head_bytes
            if room <= 0:
                self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return
            # The head may end inside `piece`: the parser says so (on_headers_complete) and
            # the rest, a body or the next request, is fed on the next turn of the loop.
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            super().data_received(piece)

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._wait(self.limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes = 0
        self._stop_waiting()
        if self.cycle.response_complete:  # answered before its body ended: idle from now
            self._wait(self.limits.header_timeout)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Idle unless a pipelined request has just started, or this one's body still arrives.
        idle = self.cycle.response_complete and self._head_bytes is not None
        if idle and not self.transport.is_closing():
            self._wait(self.limits.header_timeout)

    def _wait(self, seconds: float) -> None:
        self._stop_waiting()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._head_bytes is None:  # a body too slow
            unanswerable = self.cycle.response_started
        else:  # a head too slow, or a connection idle since its start or its last response
            unanswerable = self._head_bytes == 0
        if unanswerable:
            self.transport.close()
        else:
            self._refuse(HTTPStatus.REQUEST_TIMEOUT)

    def _refuse(self, status: HTTPStatus) -> None:
        """Answer `status` in place of the request being received, and close."""
        body = status.phrase.encode("ascii")
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"connection", b"close"),
        ]
        lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(STATUS_LINE[status] + lines + b"\r\n" + body)
        self.transport.close()
        log.info("server.refused", status=int(status), client=_address(self.client))


def _address(client: tuple[str, int] | None) -> str | None:
    return f"{client[0]}:{client[1]}" if client else None


def protocol_for(limits: ServerConfig) -> type[LimitedProtocol]:
    """The protocol class uvicorn instantiates per connection, carrying `limits`."""

    class GatewayProtocol(LimitedProtocol):
        pass

    GatewayProtocol.limits = limits
    return GatewayProtocol


def server_for(
    app: ASGIApp, limits: ServerConfig, *, host: str, port: int, log_level: str = "warning"
) -> uvicorn.Server:
    """A uvicorn server for `app` with every limit of `limits` in force."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_for(limits),
        ws="none",
        loop="auto",
        lifespan="on",
        log_level=log_level,
        access_log=False,
        # Uvicorn answers 503 once the connections open, the requester's included, reach
        # `limit_concurrency`: one more than the connections to serve.
        limit_concurrency=limits.max_connections + 1,
        timeout_keep_alive=limits.keep_alive_timeout,
    )
    return uvicorn.Server(config)


def serve(
    app: ASGIApp,
    limits: ServerConfig,
    *,
    host: str,
    port: int,
    on_server: Callable[[uvicorn.Server], None] = lambda server: None,
) -> None:
    """Serve until a signal (or whoever `on_server` hands the server to) stops the server;
    exit 3 (as uvicorn does) if it cannot start."""
    server = server_for(app, limits, host=host, port=port)
    on_server(server)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
