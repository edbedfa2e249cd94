"""`knowledge.search`: the passages of a knowledge collection that best answer a query, each
with its citation (`file#heading`, lines or page) and score. Reads the store; no side effect.

A tool family kept beside the library it calls (not in handlers/, which sits below it).
The family's settings are filled in by the gateway from `knowledge:` and `models:`
(`handlers_with_knowledge`); under `handlers: knowledge:` only `max_result_chars` is yours.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from gateway.errors import ConfigError, EmbeddingError, UnknownCollection
from gateway.knowledge.library import MAX_K, MAX_RESULT_CHARS, Library, answer
from gateway.knowledge.settings import Collection
from gateway.tools import Family, FamilySettings, PermanentToolError, ToolContext, ToolError


class KnowledgeSettings(FamilySettings):
    # Characters of passage text in one answer at most (shared among the passages).
    max_result_chars: int = Field(MAX_RESULT_CHARS, ge=500, le=100_000)
    # Filled in by the gateway, not written under `handlers:`.
    collections: dict[str, Collection] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    base_dir: str = "."


@asynccontextmanager
async def connect(settings: KnowledgeSettings) -> AsyncIterator[Library]:
    """One library for every call: its embeddings clients are shared and closed with it."""
    library = Library(
        settings.collections, models=settings.models, base_dir=Path(settings.base_dir)
    )
    try:
        yield library
    finally:
        await library.aclose()


family = Family("knowledge", KnowledgeSettings, client=connect)
Context = ToolContext[KnowledgeSettings, Library]


@family.tool("knowledge.search", side_effects=False)
async def search(
    context: Context,
    collection: Annotated[str, Field(description="The knowledge collection to search")],
    query: Annotated[str, Field(min_length=1, max_length=2000, description="What to look for")],
    k: Annotated[int, Field(ge=1, le=MAX_K, description="How many passages at most")] = 5,
) -> dict[str, Any]:
    """Search a knowledge collection (runbooks, policies, known issues) for the passages that
    best answer `query`. Cite the `citation` of each passage you use.

    Returns {"passages": [{citation, score, text}], "count": n}, best first.
    """
    store = context.store
    if store is None:
        raise PermanentToolError(
            "knowledge.search needs the gateway's store (run it in the worker)"
        )
    library = await context.client()
    try:
        hits = await library.search(collection, query, k, store=store.knowledge)
    except (UnknownCollection, ConfigError) as exc:
        raise PermanentToolError(str(exc)) from exc
    except EmbeddingError as exc:
        raise ToolError(str(exc)) from exc
    passages = answer(hits, context.settings.max_result_chars)
    return {"passages": passages, "count": len(passages)}


@search.describe
def _describe(settings: KnowledgeSettings) -> str:
    names = ", ".join(sorted(settings.collections)) or "none configured"
    return f"{search.description}\n\nCollections: {names}."
