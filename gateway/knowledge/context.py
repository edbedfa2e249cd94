"""What a rule's assistant gets from the collections besides `knowledge.search`:

    assistant:
      context: {knowledge: runbooks, query: "{{ payload.subject }}", k: 4}
      file_search: [policies]          # hosted collections, searched by the model itself

`context:` passages go before the rendered prompt, each under its citation; `file_search:`
offers the hosted `file_search` tool over those collections' vector stores.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.knowledge.library import MAX_K, MAX_RESULT_CHARS, Library, answer
from gateway.store.abc import KnowledgeStore


class KnowledgeContext(BaseModel):
    """The `context:` of an assistant rule."""

    model_config = ConfigDict(extra="forbid")

    knowledge: str = Field(description="the collection searched")
    query: str = Field(min_length=1, description="a template, rendered like the prompt")
    k: int = Field(4, ge=1, le=MAX_K)


async def with_context(
    context: KnowledgeContext,
    query: str,
    prompt: str,
    library: Library,
    store: KnowledgeStore,
) -> str:
    """`prompt` after the passages `query` finds (a note when it finds none)."""
    hits = await library.search(context.knowledge, query, context.k, store=store)
    if not hits:
        found = f"No passage of the {context.knowledge} collection matched."
    else:
        found = "\n\n".join(
            f"[{passage['citation']}]\n{passage['text']}"
            for passage in answer(hits, MAX_RESULT_CHARS)
        )
    return (
        f"Passages from the {context.knowledge} collection (cite them by the bracketed "
        f"source):\n\n{found}\n\n---\n\n{prompt}"
    )


async def file_search_tool(library: Library, collections: list[str]) -> dict[str, Any]:
    """The hosted `file_search` tool over the vector stores of these hosted collections."""
    ids = [await library.vector_store_id(name) for name in collections]
    return {"type": "file_search", "vector_store_ids": ids}
