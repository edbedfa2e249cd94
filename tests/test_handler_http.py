"""The http.request tool: the private-address guard, and calls to an allowlisted loopback server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.testing.server import serve_in_thread
from gateway.tools import PermanentToolError, Toolbox, ToolError
from tests.calls import call_tool


class Echo:
    """Records each request; /echo answers with what it got, /unavailable with 503."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.peers: list[int] = []  # the client port of each /echo request: its connection
        self.app = Starlette(
            routes=[
                Route("/echo", self.echo, methods=["GET", "POST"]),
                Route("/unavailable", self.unavailable, methods=["POST"]),
                Route("/missing", self.missing, methods=["GET"]),
                Route("/big", self.big, methods=["GET"]),
            ]
        )

    async def echo(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append((request.method, dict(request.headers), body))
        self.peers.append(request.client.port if request.client else 0)
        return JSONResponse(
            {"method": request.method, "body": body.decode()}, headers={"ETag": '"v1"'}
        )

    async def unavailable(self, request: Request) -> Response:
        self.requests.append((request.method, dict(request.headers), await request.body()))
        return PlainTextResponse("busy", status_code=503, headers={"Retry-After": "12"})

    async def missing(self, request: Request) -> Response:
        return PlainTextResponse("no such thing", status_code=404)

    async def big(self, request: Request) -> Response:
        return PlainTextResponse("x" * 100_000)


@pytest.fixture
def echo() -> Iterator[tuple[Echo, str]]:
    server = Echo()
    with serve_in_thread(server.app) as url:
        yield server, url


async def request(settings: dict[str, Any], key: str = "run-1/step-1", **arguments: Any) -> Any:
    return await call_tool("http.request", settings, arguments, key=key)


async def test_loopback_is_refused_unless_allowlisted(echo: tuple[Echo, str]) -> None:
    server, url = echo

    with pytest.raises(PermanentToolError, match="loopback"):
        await request({}, method="GET", url=f"{url}/echo")
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://224.0.0.1/",
        "http://localhost/",
    ],
)
async def test_private_link_local_and_multicast_addresses_are_refused(url: str) -> None:
    with pytest.raises(PermanentToolError, match="refusing"):
        await request({}, method="GET", url=url)


async def test_allowlisted_loopback_receives_the_idempotency_key(echo: tuple[Echo, str]) -> None:
    server, url = echo

    result = await request(
        {"allow_hosts": ["127.0.0.1"]},
        key="run-9/step-4",
        method="POST",
        url=f"{url}/echo",
        json={"deploy": "v2"},
        headers={"X-Trace": "t1"},
    )

    assert result["status"] == 200
    assert result["body"] == {"method": "POST", "body": '{"deploy":"v2"}'}
    assert result["headers"]["etag"] == '"v1"'
    (_, headers, _) = server.requests[0]
    assert headers["idempotency-key"] == "run-9/step-4"
    assert headers["x-trace"] == "t1"


async def test_a_cidr_in_the_allowlist_admits_its_addresses(echo: tuple[Echo, str]) -> None:
    _, url = echo

    result = await request({"allow_hosts": ["127.0.0.0/8"]}, method="GET", url=f"{url}/echo")

    assert result["status"] == 200


async def test_hosts_outside_a_configured_allowlist_are_refused(echo: tuple[Echo, str]) -> None:
    _, url = echo

    with pytest.raises(PermanentToolError, match=r"not in handlers\.http\.allow_hosts"):
        await request({"allow_hosts": ["api.example.com"]}, method="GET", url=f"{url}/echo")


async def test_503_with_retry_after_is_retryable(echo: tuple[Echo, str]) -> None:
    _, url = echo

    with pytest.raises(ToolError) as failure:
        await request({"allow_hosts": ["127.0.0.1"]}, method="POST", url=f"{url}/unavailable")

    assert failure.value.retryable
    assert failure.value.retry_after == 12


async def test_404_is_permanent(echo: tuple[Echo, str]) -> None:
    _, url = echo

    with pytest.raises(PermanentToolError, match="HTTP 404"):
        await request({"allow_hosts": ["127.0.0.1"]}, method="GET", url=f"{url}/missing")


async def test_long_text_body_is_truncated_to_64_kib(echo: tuple[Echo, str]) -> None:
    _, url = echo

    result = await request({"allow_hosts": ["127.0.0.1"]}, method="GET", url=f"{url}/big")

    assert result["truncated"] is True
    assert len(result["body"]) == 64 * 1024


async def test_non_http_schemes_are_refused() -> None:
    with pytest.raises(PermanentToolError, match="http"):
        await request({}, method="GET", url="file:///etc/passwd")


async def test_unreachable_host_is_retryable() -> None:
    with serve_in_thread(Starlette()) as url:
        pass

    with pytest.raises(ToolError) as failure:
        await request({"allow_hosts": ["127.0.0.1"], "timeout": 2}, method="GET", url=url)
    assert failure.value.retryable


async def test_an_allowlisted_name_is_sent_as_the_host_header(echo: tuple[Echo, str]) -> None:
    server, url = echo
    port = url.rsplit(":", 1)[1]

    await request({"allow_hosts": ["localhost"]}, method="GET", url=f"http://localhost:{port}/echo")

    (_, headers, _) = server.requests[0]
    assert headers["host"] == f"localhost:{port}"


async def test_calls_to_one_host_name_share_a_connection_and_another_name_gets_its_own(
    echo: tuple[Echo, str],
) -> None:
    server, url = echo
    port = url.rsplit(":", 1)[1]
    settings = {"allow_hosts": ["127.0.0.1", "localhost"]}
    async with Toolbox({"http": settings}) as toolbox:
        for n, host in enumerate(["127.0.0.1", "127.0.0.1", "localhost"]):
            arguments = {"method": "GET", "url": f"http://{host}:{port}/echo"}
            await toolbox.call("http.request", arguments, key=f"k{n}")

    first, second, other = server.peers
    assert first == second, "the second call reused the first call's connection"
    # Same address, another name: a connection (and a TLS session) of its own.
    assert other != first
