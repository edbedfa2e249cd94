"""OpenAI platform webhooks as a `standard` source: what the gateway accepts, the real `openai`
library accepts too, and the documented example rule routes `response.completed`."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import orjson
import pytest
from openai.types.webhooks import ResponseCompletedWebhookEvent

import gateway.ingest.providers  # noqa: F401  (fills the registry)
from gateway.config import SourceConfig
from gateway.errors import SignatureInvalid
from gateway.ingest.provider import PROVIDERS, Provider
from tests.live import live_gateway

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a test key, as OPENAI_WEBHOOK_SECRET
SOURCE = {"provider": "standard", "secret": SECRET}


def docs_example_rule() -> str:
    """The example rule of docs/providers.md ("OpenAI platform webhooks"), run as written."""
    text = (Path(__file__).parents[1] / "docs" / "providers.md").read_text(encoding="utf-8")
    return text.split("```yaml openai-rule\n", 1)[1].split("```", 1)[0]


def event(kind: str, object_id: str) -> bytes:
    """An event as OpenAI posts it: the object's id only, under `data` (a thin event)."""
    return orjson.dumps(
        {
            "id": f"evt_{object_id}",
            "object": "event",
            "created_at": 1795608000,
            "type": kind,
            "data": {"id": object_id},
        }
    )


def openai_source() -> Provider:
    return PROVIDERS["standard"](SourceConfig.model_validate(SOURCE))


def test_the_openai_library_accepts_what_the_gateway_signs_and_the_gateway_it() -> None:
    body, now = event("response.completed", "resp_abc123"), time.time()
    headers = openai_source().sign(body, {}, now)

    unwrapped = openai.OpenAI(api_key="unused", webhook_secret=SECRET).webhooks.unwrap(
        body, headers
    )
    assert isinstance(unwrapped, ResponseCompletedWebhookEvent)
    assert unwrapped.data.id == "resp_abc123"
    openai_source().verify(headers, body, now)
    # And a byte changed fails both.
    with pytest.raises(openai.InvalidWebhookSignatureError):
        openai.OpenAI(api_key="unused").webhooks.verify_signature(
            body + b" ", headers, secret=SECRET
        )
    with pytest.raises(SignatureInvalid):
        openai_source().verify(headers, body + b" ", now)


def test_the_example_rule_routes_response_completed_only(tmp_path: Path) -> None:
    with live_gateway(tmp_path, docs_example_rule(), sources={"openai": SOURCE}) as gw:
        provider = openai_source()
        for kind, object_id in (("response.completed", "resp_1"), ("batch.completed", "b_1")):
            body = event(kind, object_id)
            headers = provider.sign(body, {}, time.time()) | {"content-type": "application/json"}
            assert gw.client.post("/hooks/openai", content=body, headers=headers).status_code == 202
        again = gw.client.post("/hooks/openai", content=body, headers=headers)
        (run,) = gw.finished_runs(1)
        (step,) = gw.steps(run.id)

    assert again.json()["duplicate"] is True  # OpenAI's retries keep webhook-id
    assert (run.rule, run.status) == ("background-response-done", "succeeded")
    assert "response resp_1 completed" in str(step.result)
