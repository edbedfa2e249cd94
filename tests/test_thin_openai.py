"""Thin events from OpenAI: a `standard` source with `fetch: openai` has the worker fetch the
response (or batch) an OpenAI platform webhook names, through the real `openai` library from a
loopback server speaking those parts of the API, before routing on `payload.object`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.config import SourceConfig
from gateway.ingest.provider import PROVIDERS
from gateway.testing.server import serve_in_thread
from tests.live import LiveGateway, live_gateway

# Every rule here records its calls with the test tool.
pytestmark = pytest.mark.usefixtures("recording")

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a test key, as OPENAI_WEBHOOK_SECRET
API_KEY = "sk-test-thin-openai"
RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1795608000,
    "status": "completed",
    "model": "gpt-4.1-mini",
    "output": [],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
}
RULES = """
- name: response-done
  on: {source: openai, event: response.completed}
  when: "{{ payload.object.status == 'completed' }}"
  actions:
    - test.record: {label: "{{ payload.object.id }} by {{ payload.object.model }}"}
- name: eval-done
  on: {source: openai, event: eval.run.succeeded}
  actions:
    - test.record: {label: "eval run {{ payload.data.id }}"}
"""


class OpenAIAPI:
    """GET /v1/responses/{id}: planned failures first, then the response."""

    def __init__(self) -> None:
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.requests: list[tuple[str, str]] = []

    def app(self) -> Starlette:
        async def response(request: Request) -> JSONResponse:
            self.requests.append((request.url.path, request.headers["authorization"]))
            if self.failures:
                status, headers = self.failures.pop(0)
                error = {"message": f"planned {status}", "type": "server_error"}
                return JSONResponse({"error": error}, status, headers=headers)
            if request.path_params["id"] != RESPONSE["id"]:
                return JSONResponse({"error": {"message": "not found"}}, 404)
            return JSONResponse(RESPONSE)

        return Starlette(routes=[Route("/v1/responses/{id}", response)])


@contextmanager
def openai_gateway(tmp_path: Path) -> Iterator[tuple[OpenAIAPI, LiveGateway]]:
    api = OpenAIAPI()
    with serve_in_thread(api.app()) as url:
        source = {
            "provider": "standard",
            "secret": SECRET,
            "fetch": "openai",
            "api_key": API_KEY,
            "api_base": f"{url}/v1",
        }
        retry = {"backoff_base": 0.01, "backoff_max": 0.05}
        with live_gateway(tmp_path, RULES, sources={"openai": source}, retry=retry) as gw:
            yield api, gw


def deliver(gw: LiveGateway, kind: str, object_id: str) -> None:
    """An event as OpenAI posts it (the object's id only), signed for the source."""
    body = orjson.dumps(
        {
            "id": f"evt_{object_id}",
            "object": "event",
            "created_at": 1795608000,
            "type": kind,
            "data": {"id": object_id},
        }
    )
    source = SourceConfig.model_validate({"provider": "standard", "secret": SECRET})
    headers = PROVIDERS["standard"](source).sign(body, {}, time.time())
    response = gw.client.post("/hooks/openai", content=body, headers=headers)
    assert response.status_code == 202, response.text


def test_an_openai_webhook_is_routed_on_the_response_it_names(tmp_path: Path) -> None:
    with openai_gateway(tmp_path) as (api, gw):
        api.failures.append((503, {"retry-after-ms": "50"}))
        deliver(gw, "response.completed", "resp_1")
        (run,) = gw.finished_runs(1)
        (step,) = gw.steps(run.id)
        event: Any = gw.event(run.event_id)

    assert (run.rule, run.status) == ("response-done", "succeeded")
    assert step.arguments["label"] == "resp_1 by gpt-4.1-mini"
    # A 503 first, then the response: fetched with the source's key, retried by the worker.
    assert api.requests == [("/v1/responses/resp_1", f"Bearer {API_KEY}")] * 2
    assert event.fetched["status"] == "completed"
    assert orjson.loads(event.body)["object"] == "event"  # the body as OpenAI sent it


def test_an_openai_event_naming_no_fetchable_object_routes_as_sent(tmp_path: Path) -> None:
    with openai_gateway(tmp_path) as (api, gw):
        deliver(gw, "eval.run.succeeded", "evalrun_1")
        (run,) = gw.finished_runs(1)
        (step,) = gw.steps(run.id)

    assert step.arguments["label"] == "eval run evalrun_1"
    assert api.requests == []
