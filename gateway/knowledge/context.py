"""`assistant.context:` — a rule puts the best passages of a collection into its prompt:

    assistant:
      context: {knowledge: runbooks, query: "{{ payload.subject }}", k: 4}

The passages go before the rendered prompt, each under its citation, so the model can cite them.
"""

from __future__ import annotations

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
