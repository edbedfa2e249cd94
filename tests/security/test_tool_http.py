"""Item 11: `http.request` has one deadline for the whole call, and refuses IPv6 addresses
that embed a private, loopback or link-local IPv4 address (6to4, NAT64, Teredo, mapped).

The slow server is a real uvicorn on loopback that drips its body a byte at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from gateway.testing.server import serve_in_thread
from gateway.tools import PermanentToolError, ToolError
from tests.calls import call_tool

BODY = b"hello world!"  # 12 bytes


class Drip:
    """Answers 200 at once, then one byte of BODY every `interval` seconds; stops when the
    client goes away."""

    def __init__(self, interval: float) -> None:
        self.interval = interval

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        gone = asyncio.Event()

        async def watch() -> None:
            message: Message = await receive()
            while message["type"] != "http.disconnect":
                message = await receive()
            gone.set()

        watcher = asyncio.create_task(watch())
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"12")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            for i in range(len(BODY)):
                await send(
                    {"type": "http.response.body", "body": BODY[i : i + 1], "more_body": True}
                )
                try:
                    await asyncio.wait_for(gone.wait(), self.interval)
                    return
                except TimeoutError:
                    pass
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()


def dripping(interval: float) -> Iterator[str]:
    with serve_in_thread(Drip(interval)) as url:
        yield url


@pytest.fixture
def slow_url() -> Iterator[str]:
    """12 bytes over 18 s."""
    yield from dripping(1.5)


@pytest.fixture
def quick_url() -> Iterator[str]:
    """12 bytes over 1.2 s."""
    yield from dripping(0.1)


async def request(settings: dict[str, Any], **arguments: Any) -> Any:
    return await call_tool("http.request", settings, arguments)


async def test_a_body_dripped_past_the_timeout_fails_the_call_at_the_deadline(
    slow_url: str,
) -> None:
    started = time.monotonic()

    with pytest.raises(ToolError, match=r"did not complete within 2 s") as failed:
        await request(
            {"allow_hosts": ["127.0.0.1"], "timeout": 2}, method="GET", url=f"{slow_url}/"
        )

    assert 1.9 < time.monotonic() - started < 3.5
    assert failed.value.retryable


async def test_a_body_dripped_within_the_timeout_is_read_whole(quick_url: str) -> None:
    result = await request(
        {"allow_hosts": ["127.0.0.1"], "timeout": 2}, method="GET", url=f"{quick_url}/"
    )

    assert (result["status"], result["body"]) == (200, BODY.decode())


# Each address embeds an IPv4 address the guard refuses, and names it.
EMBEDDED = [
    ("2002:7f00:1::", "6to4", "127.0.0.1", "loopback"),
    ("2002:a00:1::1", "6to4", "10.0.0.1", "private"),
    ("2002:c0a8:101::", "6to4", "192.168.1.1", "private"),
    ("2002:a9fe:a9fe::", "6to4", "169.254.169.254", "link-local"),
    ("64:ff9b::7f00:1", "NAT64", "127.0.0.1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64", "169.254.169.254", "link-local"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo", "127.0.0.1", "loopback"),
    ("::7f00:1", "IPv4-compatible", "127.0.0.1", "loopback"),
    ("::ffff:a9fe:a9fe", "IPv4-mapped", "169.254.169.254", "link-local"),
]


@pytest.mark.parametrize(("address", "embedding", "ipv4", "kind"), EMBEDDED)
async def test_an_ipv6_address_embedding_a_refused_ipv4_is_refused(
    address: str, embedding: str, ipv4: str, kind: str
) -> None:
    with pytest.raises(PermanentToolError) as refused:
        await request({}, method="GET", url=f"http://[{address}]/")

    message = str(refused.value)
    assert f"a {kind} address" in message
    assert f"{embedding} of {ipv4}" in message


@pytest.mark.parametrize(
    ("address", "allow_hosts"),
    [
        ("2002:7f00:1::", ["2002::/16"]),  # allowlisted by the operator
        ("64:ff9b::808:808", []),  # NAT64 of a public address: it goes to 8.8.8.8 only
    ],
)
async def test_an_embedding_the_guard_allows_gets_as_far_as_connecting(
    address: str, allow_hosts: list[str]
) -> None:
    # Nothing answers there: a retryable connection failure shows the guard let it pass.
    with pytest.raises(ToolError) as failed:
        await request(
            {"allow_hosts": allow_hosts, "timeout": 2}, method="GET", url=f"http://[{address}]/"
        )

    assert not isinstance(failed.value, PermanentToolError)
