"""The slack.post tool against a fake Slack (webhook and Web API) on a loopback server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.testing.server import serve_in_thread
from gateway.tools import PermanentToolError, ToolError
from tests.calls import call_tool

TOKEN = "xoxb-test-token"


class FakeSlack:
    """An incoming webhook at /hooks/T1/B1 and chat.postMessage at /api/chat.postMessage."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.next_error: tuple[int, str, dict[str, str]] | None = None
        self.app = Starlette(
            routes=[
                Route("/hooks/T1/B1", self.webhook, methods=["POST"]),
                Route("/api/chat.postMessage", self.post_message, methods=["POST"]),
            ]
        )

    async def webhook(self, request: Request) -> Response:
        if self.next_error:
            status, error, headers = self.next_error
            self.next_error = None
            return PlainTextResponse(error, status_code=status, headers=headers)
        self.posts.append(await request.json())
        return PlainTextResponse("ok")

    async def post_message(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        if self.next_error:
            status, error, headers = self.next_error
            self.next_error = None
            return JSONResponse({"ok": False, "error": error}, status_code=status, headers=headers)
        document = await request.json()
        self.posts.append(document)
        return JSONResponse({"ok": True, "channel": "C0123", "ts": "1700000000.000100"})


@pytest.fixture
def slack() -> Iterator[tuple[FakeSlack, str]]:
    fake = FakeSlack()
    with serve_in_thread(fake.app) as url:
        yield fake, url


async def post(settings: dict[str, Any], **arguments: Any) -> Any:
    return await call_tool("slack.post", settings, arguments)


async def test_webhook_mode_posts_text_and_blocks(slack: tuple[FakeSlack, str]) -> None:
    fake, url = slack
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Deployed*"}}]

    result = await post({"webhook_url": f"{url}/hooks/T1/B1"}, text="Deployed", blocks=blocks)

    assert result == {"ok": True}
    assert fake.posts == [{"text": "Deployed", "blocks": blocks}]


async def test_webhook_error_code_is_permanent(slack: tuple[FakeSlack, str]) -> None:
    fake, url = slack
    fake.next_error = (404, "channel_not_found", {})

    with pytest.raises(PermanentToolError, match="channel_not_found"):
        await post({"webhook_url": f"{url}/hooks/T1/B1"}, text="x")


async def test_token_mode_calls_chat_post_message_with_the_channel(
    slack: tuple[FakeSlack, str],
) -> None:
    fake, url = slack
    settings = {"token": TOKEN, "api_url": f"{url}/api", "channel": "#ops"}

    result = await post(settings, text="Hello")
    await post(settings, text="Elsewhere", channel="C999")

    assert result == {"ok": True, "channel": "C0123", "ts": "1700000000.000100"}
    assert fake.posts == [
        {"text": "Hello", "channel": "#ops"},
        {"text": "Elsewhere", "channel": "C999"},
    ]


async def test_token_mode_rate_limit_is_retryable_with_retry_after(
    slack: tuple[FakeSlack, str],
) -> None:
    fake, url = slack
    fake.next_error = (429, "ratelimited", {"Retry-After": "30"})

    with pytest.raises(ToolError) as failure:
        await post({"token": TOKEN, "api_url": f"{url}/api"}, text="x", channel="C1")

    assert failure.value.retryable
    assert failure.value.retry_after == 30


async def test_token_mode_not_ok_is_permanent(slack: tuple[FakeSlack, str]) -> None:
    _, url = slack

    with pytest.raises(PermanentToolError, match="invalid_auth"):
        await post({"token": "xoxb-wrong", "api_url": f"{url}/api"}, text="x", channel="C1")
