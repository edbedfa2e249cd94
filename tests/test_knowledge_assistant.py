"""Assistants with knowledge: a run that calls `knowledge.search`, gets citations and answers,
and a rule whose prompt carries the passages its `context:` found."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.testing.fake_llm import ScriptedModel, answer, call, conversation_text
from tests.fixtures import requires_fixtures
from tests.knowledge import PATTERNS, copy_corpus
from tests.live import LiveGateway, live_gateway

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]

SEARCH_RULE = """
- name: support
  on: {source: shop, event: orders/create}
  assistant:
    model: default
    instructions: Answer from the knowledge base and cite it.
    prompt: "Customer asks: {{ payload.note }}"
    tools: [knowledge.search]
    policy: {knowledge.search: {collection: [kb]}}
"""

CONTEXT_RULE = """
- name: support
  on: {source: shop, event: orders/create}
  assistant:
    model: default
    prompt: "Customer asks: {{ payload.note }}"
    context: {knowledge: kb, query: "{{ payload.note }}", k: 2}
"""


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as scripted:
        yield scripted


def knowledge_gateway(tmp_path: Path, model: ScriptedModel, rules: str) -> Any:
    copy_corpus(tmp_path)
    return live_gateway(
        tmp_path,
        rules,
        models={"default": {"api": "responses", "base_url": model.url, "model": "scripted-model"}},
        knowledge={"kb": {"paths": PATTERNS, "passage_chars": 500, "overlap_chars": 50}},
    )


def indexed(gw: LiveGateway) -> None:
    """Wait for the index the gateway builds at start."""
    gw.wait_for(lambda: gw.query(lambda s: s.knowledge.collections()) or None)


def outputs(body: dict[str, Any]) -> list[str]:
    return [i["output"] for i in body["input"] if i.get("type") == "function_call_output"]


def test_an_assistant_searches_the_knowledge_base_and_answers_with_a_citation(
    tmp_path: Path, model: ScriptedModel
) -> None:
    model.script(
        call("knowledge__search", {"collection": "kb", "query": "refund card how long", "k": 2}),
        call("knowledge__search", {"collection": "secrets", "query": "passwords", "k": 1}),
        answer("Five to ten business days (kb/policies/refunds.md#Refund policy)."),
    )
    with knowledge_gateway(tmp_path, model, SEARCH_RULE) as gw:
        indexed(gw)
        gw.post_order("e1", note="When will my refund show up on my card?")
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    assert run.status == "succeeded"
    assert [s.kind for s in steps] == ["prompt", "model", "tool", "model", "tool", "model"]
    found = json.loads(outputs(model.requests[1])[0])
    assert found["count"] == 2
    first = found["passages"][0]
    assert first["citation"] == (
        "kb/policies/refunds.md#Refund policy > How refunds are paid (lines 15-16)"
    )
    assert "five to ten business days" in first["text"]
    assert steps[2].result == found  # the step keeps what the model was given
    # The policy allows only `kb`: the other collection is refused before the tool runs.
    assert steps[4].status == "refused"
    assert "collection" in outputs(model.requests[2])[1]
    model.assert_all_used()


def test_a_context_rule_puts_the_passages_into_the_prompt(
    tmp_path: Path, model: ScriptedModel
) -> None:
    model.script(answer("The standby is promoted with patronictl."))
    with knowledge_gateway(tmp_path, model, CONTEXT_RULE) as gw:
        indexed(gw)
        gw.post_order("e1", note="how do I promote the standby database replica")
        [run] = gw.finished_runs(1)

    assert run.status == "succeeded"
    prompt = conversation_text(model.requests[0])
    assert (
        "[kb/runbooks/database-failover.md#Database failover > Promote the replica (lines 12-14)]"
        in prompt
    )
    assert "patronictl failover --candidate db-replica-1" in prompt
    assert prompt.index("patronictl") < prompt.index("Customer asks: how do I promote")


def test_the_tool_refuses_more_than_20_passages_and_an_empty_query() -> None:
    from gateway.tools import TOOLS

    tool = TOOLS["knowledge.search"]
    assert set(tool.problems({"collection": "kb", "query": "", "k": 21})) == {"query", "k"}
    assert tool.problems({"collection": "kb", "query": "refund", "k": 20}) == {}
    assert tool.side_effects is False
