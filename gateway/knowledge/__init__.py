"""Knowledge retrieval: collections of the team's documents, indexed in the store, searched
lexically (BM25 / PostgreSQL full text), by embeddings, or both fused, and cited.
"""

from __future__ import annotations

from gateway.errors import UnknownCollection
from gateway.knowledge.library import Hit, Library, Ranking, answer
from gateway.knowledge.settings import Collection

__all__ = ["Collection", "Hit", "Library", "Ranking", "UnknownCollection", "answer"]
