"""`slack.post`: post a message to Slack, by incoming webhook or by bot token (chat.postMessage).

Slack has no idempotency key for posting, so a retry after a lost response may post twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from gateway.backoff import parse_retry_after
from gateway.tools import Family, FamilySettings, PermanentToolError, ToolContext, ToolError

if TYPE_CHECKING:
    import httpx2

DEFAULT_API_URL = "https://slack.com/api"
DEFAULT_TIMEOUT = 10.0
# Web API error codes worth another try; every other `error` is a mistake to fix, not to retry.
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class SlackSettings(FamilySettings):
    """`handlers.slack`: an incoming webhook, or a bot token (with a default channel)."""

    webhook_url: str | None = None
    token: str | None = None
    channel: str | None = None
    api_url: str | None = None  # default https://slack.com/api
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)


@asynccontextmanager
async def connect(settings: SlackSettings) -> AsyncIterator[httpx2.AsyncClient]:
    """One HTTP client per gateway: Slack's hosts are fixed by the settings, so its pooled
    connections serve every post. Imported here, by the first post: a gateway that posts
    nothing keeps the HTTP client out of memory (~1.4 MB, docs/benchmarks.md)."""
    import httpx2

    async with httpx2.AsyncClient(timeout=settings.timeout) as client:
        yield client


family = Family("slack", SlackSettings, client=connect)
if TYPE_CHECKING:
    SlackContext = ToolContext[SlackSettings, httpx2.AsyncClient]
else:  # the tool's signature is read at start (its schema), before any client exists
    SlackContext = ToolContext[SlackSettings, Any]


@family.tool("slack.post")
async def post(
    context: SlackContext,
    text: Annotated[str, Field(description="Message text (mrkdwn); the fallback if blocks given")],
    channel: Annotated[
        str | None, Field(description="Channel id or #name; default from settings")
    ] = None,
    blocks: Annotated[list[dict[str, Any]] | None, Field(description="Block Kit blocks")] = None,
) -> dict[str, Any]:
    """Post a message to a Slack channel."""
    settings = context.settings
    payload: dict[str, Any] = {"text": text}
    if blocks:
        payload["blocks"] = blocks
    channel = channel or settings.channel
    if channel:
        payload["channel"] = channel
    if settings.webhook_url:
        return await _post_webhook(await context.client(), settings.webhook_url, payload)
    if settings.token:
        if not channel:
            raise PermanentToolError("slack.post needs a channel (or handlers.slack.channel)")
        api_url = (settings.api_url or DEFAULT_API_URL).rstrip("/")
        return await _post_message(await context.client(), api_url, settings.token, payload)
    raise PermanentToolError("handlers.slack needs `webhook_url` or `token`")


async def _post_webhook(
    client: httpx2.AsyncClient, url: str, payload: dict[str, Any]
) -> dict[str, Any]:
    response = await _send(client, url, payload, headers={})
    if response.status_code == 429 or response.status_code >= 500:
        raise ToolError(
            f"Slack webhook answered HTTP {response.status_code}: {response.text[:200]}",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if response.status_code >= 400:
        # Webhooks answer a bare error code: invalid_payload, channel_not_found, no_service...
        raise PermanentToolError(
            f"Slack webhook refused the message (HTTP {response.status_code}): "
            f"{response.text[:200]}"
        )
    return {"ok": True}


async def _post_message(
    client: httpx2.AsyncClient, api_url: str, token: str, payload: dict[str, Any]
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    response = await _send(client, f"{api_url}/chat.postMessage", payload, headers=headers)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if response.status_code == 429 or response.status_code >= 500:
        raise ToolError(f"Slack answered HTTP {response.status_code}", retry_after=retry_after)
    try:
        document = response.json()
    except ValueError:
        raise ToolError(f"Slack answered HTTP {response.status_code} without JSON") from None
    if not isinstance(document, dict) or not document.get("ok"):
        error = document.get("error", "unknown_error") if isinstance(document, dict) else "?"
        if error in RETRYABLE_ERRORS:
            raise ToolError(f"Slack chat.postMessage failed: {error}", retry_after=retry_after)
        raise PermanentToolError(f"Slack chat.postMessage failed: {error}")
    return {"ok": True, "channel": document.get("channel"), "ts": document.get("ts")}


async def _send(
    client: httpx2.AsyncClient, url: str, payload: dict[str, Any], *, headers: dict[str, str]
) -> httpx2.Response:
    import httpx2

    try:
        return await client.post(url, json=payload, headers=headers)
    except httpx2.TimeoutException as error:
        raise ToolError("Slack did not answer in time") from error
    except httpx2.TransportError as error:
        raise ToolError(f"cannot reach Slack: {error!r}") from error
