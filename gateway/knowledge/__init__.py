"""Knowledge retrieval: collections of the team's documents, indexed in the store, searched
lexically (BM25 / PostgreSQL full text), by embeddings, or both fused, and cited.

The names below are imported on first use: a gateway without collections reads only
`knowledge.settings` (the `knowledge` tool family's settings), not the library, the loaders,
the embeddings or the assistant models they stand on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gateway.errors import UnknownCollection

if TYPE_CHECKING:
    from gateway.knowledge.library import Hit, Library, Ranking, answer
    from gateway.knowledge.settings import Collection

__all__ = ["Collection", "Hit", "Library", "Ranking", "UnknownCollection", "answer"]
_WHERE = {
    "Collection": "gateway.knowledge.settings",
    "Hit": "gateway.knowledge.library",
    "Library": "gateway.knowledge.library",
    "Ranking": "gateway.knowledge.library",
    "answer": "gateway.knowledge.library",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
