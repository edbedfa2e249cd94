"""Model backends: one assistant turn over the Responses API or Chat Completions.

Both speak the same conversation form (`turn.py`) to the caller; a model profile's `api`
picks one (`responses.py`, `chat.py`), and both share the client and its retries (`client.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx2

from gateway.assistant.chat import ChatBackend
from gateway.assistant.client import OpenAIBackend, Sleep
from gateway.assistant.models import ModelProfile
from gateway.assistant.responses import ResponsesBackend
from gateway.assistant.turn import Backend, Call, Item, ModelError, Turn

__all__ = [
    "BACKENDS",
    "Backend",
    "Call",
    "ChatBackend",
    "Item",
    "ModelError",
    "ResponsesBackend",
    "Turn",
    "make_backend",
]

BACKENDS: dict[str, type[OpenAIBackend]] = {
    "responses": ResponsesBackend,
    "chat": ChatBackend,
}


def make_backend(
    profile: ModelProfile,
    *,
    sleep: Sleep = asyncio.sleep,
    environ: Mapping[str, str] | None = None,
    http_client: httpx2.AsyncClient | None = None,
) -> Backend:
    """The backend the profile's `api` names; raises ConfigError if its key is missing."""
    return BACKENDS[profile.api](profile, sleep=sleep, environ=environ, http_client=http_client)
