"""The model clients' HTTP connections: openai's own client, whose pool checks idle
connections for a server-side close without asking anyio for every socket attribute.

httpcore checks each idle connection whenever a request starts or a response is closed, with
`get_extra_info("is_readable")`: through anyio, that call builds a dict of every attribute
of the socket (a `getpeername` included) to read one. With 64 runs in flight it was an
eighth of the gateway's CPU in bench/assistants; here the socket is looked up once.
"""

from __future__ import annotations

import select
import socket
import ssl
from typing import Any

import httpcore2
import httpx2
import openai


def model_http_client() -> httpx2.AsyncClient:
    """The client `openai.AsyncOpenAI` makes for itself (limits, timeout, redirects, proxies
    from the environment), its pools' idle checks made cheap."""
    client = openai.DefaultAsyncHttpxClient()
    # Private attributes of httpx and httpcore (pinned in the lock files): if they move, the
    # client works as it comes, and tests/test_assistant_pool.py says the saving is lost.
    for transport in [
        getattr(client, "_transport", None),
        *getattr(client, "_mounts", {}).values(),
    ]:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore2.AsyncNetworkBackend):
            pool._network_backend = QuickIdleCheck(backend)  # type: ignore[union-attr]
    return client


class QuickIdleCheck(httpcore2.AsyncNetworkBackend):
    """A network backend whose streams answer `is_readable` from their socket directly."""

    def __init__(self, backend: httpcore2.AsyncNetworkBackend) -> None:
        self.backend = backend

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self.backend.connect_tcp(*args, **kwargs))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self.backend.connect_unix_socket(*args, **kwargs))

    async def sleep(self, seconds: float) -> None:
        await self.backend.sleep(seconds)


class _Stream(httpcore2.AsyncNetworkStream):
    def __init__(self, stream: httpcore2.AsyncNetworkStream) -> None:
        self.stream = stream
        self.socket: socket.socket | None = stream.get_extra_info("socket")

    # The signatures are httpcore's interface, `timeout` included.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self.stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self.stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self.stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self.socket is not None:
            return readable(self.socket)
        return self.stream.get_extra_info(info)


def readable(sock: socket.socket) -> bool:
    """Whether reading `sock` would return at once (data, or the b"" of a closed peer); a
    closed socket counts as readable, as httpcore counts it."""
    fd = sock.fileno()
    if fd < 0:
        return True
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))
