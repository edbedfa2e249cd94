"""The model clients' connection pool: idle checks made cheap, a server's close still seen."""

from __future__ import annotations

import asyncio
import json
import socketserver
import threading
from collections.abc import Iterator

import pytest

from gateway.assistant import ModelProfile, make_backend
from gateway.assistant.pool import QuickIdleCheck, model_http_client

ANSWER = json.dumps(
    {
        "id": "resp_1",
        "status": "completed",
        "model": "m",
        "output": [
            {"type": "message", "content": [{"type": "output_text", "text": "ok"}]},
        ],
    }
).encode()


class _ClosingHandler(socketserver.StreamRequestHandler):
    """Answers one request on a keep-alive connection, then closes it from its side."""

    def handle(self) -> None:
        self.server.connections += 1  # type: ignore[attr-defined]
        length = 0
        while (line := self.rfile.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        self.rfile.read(length)
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(ANSWER)}\r\nConnection: keep-alive\r\n\r\n"
        )
        self.wfile.write(head.encode() + ANSWER)
        self.wfile.flush()


@pytest.fixture
def closing_server() -> Iterator[tuple[str, socketserver.ThreadingTCPServer]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ClosingHandler)
    server.connections = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", server
    finally:
        server.shutdown()
        server.server_close()


async def test_the_model_client_pool_checks_idle_connections_quickly() -> None:
    client = model_http_client()
    try:
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert isinstance(pool._network_backend, QuickIdleCheck)
    finally:
        await client.aclose()


async def test_a_connection_the_server_closed_while_idle_is_not_used_again(
    closing_server: tuple[str, socketserver.ThreadingTCPServer],
) -> None:
    url, server = closing_server
    backend = make_backend(ModelProfile(model="m", base_url=url, max_retries=0), environ={})
    message = {"type": "message", "role": "user", "content": "hello"}
    try:
        first = await backend.turn("", [message], [])
        await asyncio.sleep(0.2)  # the server has closed its side by now
        second = await backend.turn("", [message], [])
    finally:
        await backend.aclose()

    assert (first.text, second.text) == ("ok", "ok")
    assert server.connections == 2  # type: ignore[attr-defined]
