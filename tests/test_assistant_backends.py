"""Both model backends, through the real openai client, against the scripted model on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx2
import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from pydantic import ConfigDict, create_model

from gateway.assistant import Backend, Call, ModelError, ModelProfile, cost, make_backend
from gateway.errors import ConfigError
from gateway.testing.fake_llm import (
    ScriptedModel,
    answer,
    call,
    conversation_text,
    delay,
    error,
    turn,
)
from gateway.tools import Tool, ToolContext

Api = Literal["responses", "chat"]
APIS: list[Api] = ["responses", "chat"]


async def _create_issue(context: ToolContext, project: str, summary: str) -> dict[str, str]:
    return {"key": f"{project}-1"}


CREATE_ISSUE = Tool(
    name="jira.create_issue",
    function=_create_issue,
    description="Create a Jira issue.",
    arguments=create_model(
        "CreateIssue",
        __config__=ConfigDict(extra="forbid"),
        project=(str, ...),
        summary=(str, ...),
    ),
    side_effects=True,
)
TOOLS = [CREATE_ISSUE.definition()]
INSTRUCTIONS = "You triage failed payments."
EVENT = {"type": "message", "role": "user", "content": "Invoice in_1 failed: card declined."}


class Sleeps(list[float]):
    """Stands in for asyncio.sleep: records each pause instead of taking it."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def llm() -> Iterator[ScriptedModel]:
    yield from ScriptedModel.serving()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@asynccontextmanager
async def connect(
    llm: ScriptedModel, api: Api, sleeps: Sleeps, **settings: Any
) -> AsyncIterator[Backend]:
    backend = make_backend(llm.profile(api, **settings), sleep=sleeps, environ={})
    try:
        yield backend
    finally:
        await backend.aclose()


@pytest.mark.parametrize("api", APIS)
async def test_function_call_round_trip(llm: ScriptedModel, sleeps: Sleeps, api: Api) -> None:
    def carries_the_call_and_its_output(body: dict[str, Any]) -> None:
        text = conversation_text(body)
        assert "card declined" in text
        assert '"project": "FIN"' in text
        assert "FIN-1" in text

    llm.script(
        call("jira__create_issue", {"project": "FIN", "summary": "Card declined"}, usage=(120, 30)),
        answer("Filed FIN-1.", expect=carries_the_call_and_its_output, usage=(160, 8)),
    )
    async with connect(llm, api, sleeps) as backend:
        first = await backend.turn(INSTRUCTIONS, [EVENT], TOOLS)
        arguments = json.dumps({"project": "FIN", "summary": "Card declined"})
        assert first.text is None
        assert first.calls == [Call("call_1", "jira__create_issue", arguments)]
        assert first.calls[0].tool == "jira.create_issue"
        assert first.items == [
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "jira__create_issue",
                "arguments": arguments,
            }
        ]
        assert (first.input_tokens, first.output_tokens) == (120, 30)
        assert first.model == "scripted-model"
        assert first.response_id

        output = {"type": "function_call_output", "call_id": "call_1", "output": '{"key": "FIN-1"}'}
        items = [EVENT, *first.items, output]
        second = await backend.turn(INSTRUCTIONS, items, TOOLS)

    assert second.text == "Filed FIN-1."
    assert second.calls == []
    assert second.items == [{"type": "message", "role": "assistant", "content": "Filed FIN-1."}]
    assert (second.input_tokens, second.output_tokens) == (160, 8)
    assert sleeps == []


@pytest.mark.parametrize("api", APIS)
async def test_a_call_id_the_conversation_already_has_is_renamed_in_calls_and_items(
    llm: ScriptedModel, sleeps: Sleeps, api: Api
) -> None:
    issue = {"project": "FIN", "summary": "Card declined"}
    llm.script(
        turn(
            call("jira__create_issue", issue, "call_0"), call("jira__create_issue", issue, "call_0")
        )
    )
    earlier = {"type": "function_call", "call_id": "call_0", "name": "x", "arguments": "{}"}
    output = {"type": "function_call_output", "call_id": "call_0", "output": "done"}
    async with connect(llm, api, sleeps) as backend:
        result = await backend.turn(INSTRUCTIONS, [EVENT, earlier, output], TOOLS)

    ids = [c.call_id for c in result.calls]
    assert len(set(ids)) == 2 and "call_0" not in ids
    assert [c.model_call_id for c in result.calls] == ["call_0", "call_0"]
    assert [i["call_id"] for i in result.items] == ids


async def test_responses_request_is_stateless_and_carries_everything(
    llm: ScriptedModel, sleeps: Sleeps
) -> None:
    llm.script(answer("Nothing to do."))
    async with connect(llm, "responses", sleeps) as backend:
        await backend.turn(INSTRUCTIONS, [EVENT], TOOLS)

    [body] = llm.requests
    assert body["store"] is False
    assert "previous_response_id" not in body
    assert body["instructions"] == INSTRUCTIONS
    assert body["input"] == [EVENT]
    assert body["tools"] == TOOLS
    assert body["parallel_tool_calls"] is True


async def test_chat_request_has_system_message_and_chat_tools(
    llm: ScriptedModel, sleeps: Sleeps
) -> None:
    llm.script(
        call("jira__create_issue", {"project": "FIN", "summary": "x"}, call_id="c1"),
        answer("Done."),
    )
    async with connect(llm, "chat", sleeps) as backend:
        first = await backend.turn(INSTRUCTIONS, [EVENT], TOOLS)
        output = {"type": "function_call_output", "call_id": "c1", "output": "FIN-1"}
        await backend.turn(INSTRUCTIONS, [EVENT, *first.items, output], TOOLS)

    body = llm.requests[1]
    assert body["messages"] == [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": EVENT["content"]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {
                        "name": "jira__create_issue",
                        "arguments": first.calls[0].arguments,
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "FIN-1"},
    ]
    definition = TOOLS[0]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "jira__create_issue",
                "description": definition["description"],
                "parameters": definition["parameters"],
                "strict": True,
            },
        }
    ]


@pytest.mark.parametrize("api", APIS)
async def test_parallel_calls_and_text_in_one_turn_go_back_as_one_turn(
    llm: ScriptedModel, sleeps: Sleeps, api: Api
) -> None:
    llm.script(
        turn(
            answer("Filing two issues."),
            call("jira__create_issue", {"project": "FIN", "summary": "a"}),
            call("jira__create_issue", {"project": "OPS", "summary": "b"}),
        ),
        answer("Both filed."),
    )
    async with connect(llm, api, sleeps) as backend:
        first = await backend.turn(INSTRUCTIONS, [EVENT], TOOLS)
        assert first.text == "Filing two issues."
        assert [c.call_id for c in first.calls] == ["call_1", "call_2"]
        assert [item["type"] for item in first.items] == [
            "message",
            "function_call",
            "function_call",
        ]
        outputs = [
            {"type": "function_call_output", "call_id": c.call_id, "output": "ok"}
            for c in first.calls
        ]
        # The scripted model refuses, as the real APIs do, outputs that do not pair with calls.
        second = await backend.turn(INSTRUCTIONS, [EVENT, *first.items, *outputs], TOOLS)

    assert second.text == "Both filed."


@pytest.mark.parametrize("api", APIS)
async def test_rate_limit_waits_as_long_as_retry_after_says(
    llm: ScriptedModel, sleeps: Sleeps, api: Api
) -> None:
    llm.script(error(429, retry_after=7), error(429, retry_after_ms=1500), answer("ok"))
    async with connect(llm, api, sleeps) as backend:
        result = await backend.turn(INSTRUCTIONS, [EVENT], TOOLS)

    assert result.text == "ok"
    assert sleeps == [7.0, 1.5]
    assert len(llm.requests) == 3


@pytest.mark.parametrize("api", APIS)
async def test_server_errors_are_retried_with_growing_backoff(
    llm: ScriptedModel, sleeps: Sleeps, api: Api
) -> None:
    llm.script(error(500), error(502), answer("ok"))
    async with connect(llm, api, sleeps) as backend:
        result = await backend.turn(INSTRUCTIONS, [EVENT], TOOLS)

    assert result.text == "ok"
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1.0


@pytest.mark.parametrize("api", APIS)
async def test_bad_request_is_not_retried(llm: ScriptedModel, sleeps: Sleeps, api: Api) -> None:
    llm.script(error(400, body={"error": {"message": "Invalid schema for function"}}))
    async with connect(llm, api, sleeps) as backend:
        with pytest.raises(ModelError, match="Invalid schema for function") as raised:
            await backend.turn(INSTRUCTIONS, [EVENT], TOOLS)

    assert raised.value.retryable is False
    assert raised.value.status == 400
    assert sleeps == []
    assert len(llm.requests) == 1


@pytest.mark.parametrize("api", APIS)
async def test_exhausted_retries_raise_a_retryable_model_error(
    llm: ScriptedModel, sleeps: Sleeps, api: Api
) -> None:
    llm.script(error(503), error(503), error(503))
    async with connect(llm, api, sleeps, max_retries=2) as backend:
        with pytest.raises(ModelError, match="after 3 attempts") as raised:
            await backend.turn(INSTRUCTIONS, [EVENT], TOOLS)

    assert raised.value.retryable is True
    assert raised.value.status == 503
    assert len(sleeps) == 2


async def test_a_long_retry_after_is_left_to_the_worker(llm: ScriptedModel, sleeps: Sleeps) -> None:
    llm.script(error(429, retry_after=600))
    async with connect(llm, "responses", sleeps) as backend:
        with pytest.raises(ModelError) as raised:
            await backend.turn(INSTRUCTIONS, [EVENT], TOOLS)

    assert raised.value.retryable is True
    assert raised.value.retry_after == 600
    assert sleeps == []


@pytest.mark.parametrize("api", APIS)
async def test_a_request_that_times_out_is_retried(
    llm: ScriptedModel, sleeps: Sleeps, api: Api
) -> None:
    llm.script(delay(5), answer("ok"))
    async with connect(llm, api, sleeps, timeout=0.3) as backend:
        result = await backend.turn(INSTRUCTIONS, [EVENT], TOOLS)

    assert result.text == "ok"
    assert len(sleeps) == 1


async def test_an_unreachable_server_is_a_retryable_error(sleeps: Sleeps) -> None:
    with ScriptedModel() as gone:
        profile = gone.profile("responses", max_retries=1)
    backend = make_backend(profile, sleep=sleeps, environ={})
    try:
        with pytest.raises(ModelError) as raised:
            await backend.turn(INSTRUCTIONS, [EVENT], TOOLS)
    finally:
        await backend.aclose()

    assert raised.value.retryable is True
    assert len(sleeps) == 1


async def test_an_unused_scripted_step_fails_the_test(sleeps: Sleeps) -> None:
    unused = r"1 scripted step\(s\) never used: answer\('later'\)"
    with (
        pytest.raises(AssertionError, match=unused),
        ScriptedModel(answer("now"), answer("later")) as llm,
    ):
        async with connect(llm, "responses", sleeps) as backend:
            await backend.turn(INSTRUCTIONS, [EVENT], TOOLS)


@pytest.mark.parametrize("api", APIS)
async def test_an_output_without_its_call_is_refused_as_the_real_api_does(
    llm: ScriptedModel, sleeps: Sleeps, api: Api
) -> None:
    llm.script(answer("never sent"))
    orphan = {"type": "function_call_output", "call_id": "call_9", "output": "ok"}
    async with connect(llm, api, sleeps) as backend:
        with pytest.raises(ModelError, match=r"call_9|tool_call_id") as raised:
            await backend.turn(INSTRUCTIONS, [EVENT, orphan], TOOLS)

    assert raised.value.retryable is False
    assert len(llm.problems) == 1
    llm.problems.clear()


async def test_a_failed_expectation_fails_the_turn_and_the_test(sleeps: Sleeps) -> None:
    def sees_earlier_conversation(body: dict[str, Any]) -> None:
        assert "FIN-1" in conversation_text(body), "the earlier issue is not in the input"

    with ScriptedModel(answer("ok", expect=sees_earlier_conversation)) as llm:
        async with connect(llm, "chat", sleeps) as backend:
            with pytest.raises(ModelError) as raised:
                await backend.turn(INSTRUCTIONS, [EVENT], TOOLS)
        assert raised.value.retryable is False
        with pytest.raises(AssertionError, match="the earlier issue is not in the input"):
            llm.assert_all_used()
        llm.problems.clear()


@pytest.mark.parametrize(
    ("path", "model"), [("responses", Response), ("chat/completions", ChatCompletion)]
)
def test_scripted_answers_validate_against_the_client_models(
    llm: ScriptedModel, path: str, model: type[Response] | type[ChatCompletion]
) -> None:
    llm.script(turn(answer("Filing."), call("jira__create_issue", {"project": "FIN"})))
    body = (
        {"model": "m", "input": [EVENT], "tools": TOOLS, "store": False}
        if path == "responses"
        else {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    response = httpx2.post(f"{llm.url}/{path}", json=body)

    assert response.status_code == 200
    model.model_validate(response.json())


def test_cost_uses_profile_prices_then_the_default_table() -> None:
    priced = ModelProfile(model="local", prices={"input": 1.0, "output": 2.0})
    assert cost(priced, 1_000_000, 500_000) == pytest.approx(2.0)
    assert cost(ModelProfile(model="gpt-4.1-mini-2025-04-14"), 1_000_000, 0) == pytest.approx(0.4)
    assert cost(ModelProfile(model="qwen3"), 10_000, 10_000) == 0.0


def test_a_hosted_model_needs_its_key_and_a_local_one_does_not() -> None:
    hosted = ModelProfile(model="gpt-4.1-mini")
    local = ModelProfile(api="chat", model="qwen3", base_url="http://127.0.0.1:11434/v1")

    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        hosted.api_key({})
    assert hosted.api_key({"OPENAI_API_KEY": "sk-test"}) == "sk-test"
    assert local.api_key({}) == "not-needed"
