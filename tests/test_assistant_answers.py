"""Answers a model server should not give: each is a clear ModelError, never a crash of the run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.assistant import ModelError, ModelProfile, make_backend
from gateway.testing.server import serve_in_thread

EVENT = {"type": "message", "role": "user", "content": "Invoice in_1 failed: card declined."}

# (what the server answers with 200, its content type)
MALFORMED = {
    "html": (b"<html><body>502 Bad Gateway</body></html>", "text/html"),
    "broken json": (b'{"id": "resp_1", "output": [', "application/json"),
    "a json list": (b"[]", "application/json"),
    "no output": (b'{"id": "resp_1", "object": "response"}', "application/json"),
    "output not a list": (b'{"id": "x", "output": 3, "choices": 3}', "application/json"),
    "a call without a name": (
        b'{"id": "x", "status": "completed", "model": "m", "output": [{"type": "function_call",'
        b' "call_id": "c"}], "choices": [{"finish_reason": "tool_calls", "message": {"role":'
        b' "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {}}]}}]}',
        "application/json",
    ),
}


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[bytes, str]]]]:
    """A model server answering 200 with whatever body the test puts in the list."""
    bodies: list[tuple[bytes, str]] = []

    async def answer(request: Request) -> Response:
        body, kind = bodies[0]
        return Response(body, media_type=kind)

    routes = [
        Route("/v1/responses", answer, methods=["POST"]),
        Route("/v1/chat/completions", answer, methods=["POST"]),
    ]
    with serve_in_thread(Starlette(routes=routes)) as url:
        yield f"{url}/v1", bodies


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("kind", MALFORMED)
async def test_a_malformed_answer_is_a_model_error_that_names_the_model(
    server: tuple[str, list[tuple[bytes, str]]], api: Any, kind: str
) -> None:
    url, bodies = server
    bodies.append(MALFORMED[kind])
    backend = make_backend(ModelProfile(api=api, model="m", base_url=url), environ={})
    try:
        with pytest.raises(ModelError, match=r"^model m: malformed answer") as raised:
            await backend.turn("", [EVENT], [])
    finally:
        await backend.aclose()

    assert raised.value.retryable is False
