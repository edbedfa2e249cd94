"""What a rule's assistant gets from the collections besides `knowledge.search`:

    assistant:
      context: {knowledge: runbooks, query: "{{ payload.subject }}", k: 4}
      file_search: [policies]          # hosted collections, searched by the model itself

`context:` passages go before the rendered prompt, each under its citation; `file_search:`
offers the hosted `file_search` tool over those collections' vector stores. The assistant
loop reaches both through the knowledge family's client, a `Library` (`Library.context` and
`Library.file_search`), without importing this package.
"""

from __future__ import annotations

from typing import Any

from gateway.knowledge.library import MAX_RESULT_CHARS, Library, answer
from gateway.rules.model import KnowledgeContext
from gateway.store.abc import KnowledgeStore


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
