"""Hosted collections: files synced by hash to an OpenAI vector store (the scripted model
server's Files and Vector Stores endpoints), deleted with the collection, and offered to a
Responses model as the hosted `file_search` tool, whose citations the step keeps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.knowledge import Collection, Library
from gateway.testing.fake_llm import ScriptedModel, answer
from tests.fixtures import requires_fixtures
from tests.knowledge import copy_corpus
from tests.live import live_gateway

POLICIES = ["kb/policies/*"]


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as scripted:
        yield scripted


def models(model: ScriptedModel) -> dict[str, dict[str, str]]:
    return {"default": {"api": "responses", "base_url": model.url, "model": "scripted-model"}}


@pytest.fixture
async def library(tmp_path: Path, model: ScriptedModel) -> AsyncIterator[Library]:
    copy_corpus(tmp_path)
    opened = Library(
        {"policies": Collection(paths=POLICIES, hosted=True)},
        models=models(model),
        base_dir=tmp_path,
    )
    yield opened
    await opened.aclose()


async def test_a_hosted_collection_is_uploaded_and_synced_by_hash(
    library: Library, model: ScriptedModel, tmp_path: Path
) -> None:
    first = await library.index("policies")
    assert first.added == [
        "kb/policies/refunds.md",
        "kb/policies/security.txt",
        "kb/policies/travel.pdf",
    ]
    store = model.vector_stores.named("gateway:policies")
    attributes = sorted(a["path"] for a in store.files.values())
    assert attributes == first.added
    assert len(model.vector_stores.files) == 3

    again = await library.index("policies")
    assert (again.added, again.updated, again.removed, again.unchanged) == ([], [], [], 3)
    assert len(model.vector_stores.files) == 3  # nothing uploaded again

    refunds = tmp_path / "kb/policies/refunds.md"
    refunds.write_text(refunds.read_text() + "\nRefunds in cash are never given.\n")
    (tmp_path / "kb/policies/security.txt").unlink()
    changed = await library.index("policies")
    assert changed.updated == ["kb/policies/refunds.md"]
    assert changed.removed == ["kb/policies/security.txt"]
    assert len(store.files) == 2 and len(model.vector_stores.files) == 2  # old copies deleted
    uploaded = model.vector_stores.files[model.vector_stores.file_id("refunds.md")].data
    assert b"Refunds in cash" in uploaded

    assert await library.drop_hosted("policies") is True
    assert model.vector_stores.stores == {} and model.vector_stores.files == {}


async def test_a_collection_no_longer_configured_loses_its_vector_store(
    library: Library, model: ScriptedModel, tmp_path: Path
) -> None:
    await library.index("policies")
    renamed = Library(
        {"rules": Collection(paths=POLICIES, hosted=True)},
        models=models(model),
        base_dir=tmp_path,
    )
    try:
        await renamed.index("rules")
        assert await renamed.prune_hosted() == ["policies"]
    finally:
        await renamed.aclose()
    assert [s.name for s in model.vector_stores.stores.values()] == ["gateway:rules"]


async def test_a_hosted_collection_is_not_searched_locally(library: Library) -> None:
    with pytest.raises(Exception, match="hosted: the model searches it with file_search"):
        await library.search("policies", "refund", 3)


@requires_fixtures
@pytest.mark.usefixtures("recording")
def test_file_search_is_offered_and_its_citations_kept_in_the_step(
    tmp_path: Path, model: ScriptedModel
) -> None:
    copy_corpus(tmp_path)
    rules = """
- name: policy-question
  on: {source: shop, event: orders/create}
  assistant:
    prompt: "Customer asks: {{ payload.note }}"
    file_search: [policies]
"""
    with live_gateway(
        tmp_path,
        rules,
        models=models(model),
        knowledge={"policies": {"paths": POLICIES, "hosted": True}},
    ) as gw:
        # The gateway uploads hosted collections at start.
        gw.wait_for(lambda: len(model.vector_stores.files) == 3 or None)
        store = model.vector_stores.named("gateway:policies")
        refunds = model.vector_stores.file_id("refunds.md")
        model.script(answer("Within 30 days, in full.", citations=[(refunds, "refunds.md")]))
        gw.post_order("e1", note="Can I get a refund after three weeks?")
        [run] = gw.finished_runs(1)
        steps = gw.steps(run.id)

    assert run.status == "succeeded"
    [request] = model.requests
    assert {"type": "file_search", "vector_store_ids": [store.id]} in request["tools"]
    assert steps[-1].result["citations"] == [{"file_id": refunds, "filename": "refunds.md"}]
    model.assert_all_used()
