"""The collections of one gateway: indexing them and searching them, lexically, by embeddings,
or both fused. The CLI, the `knowledge.search` tool and `assistant.context:` all search here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway.assistant.models import load_profiles
from gateway.config import MAX_PASSAGES
from gateway.errors import ConfigError, GatewayError, UnknownCollection
from gateway.knowledge.embeddings import Embedder, client_of
from gateway.knowledge.hosted import VectorStores
from gateway.knowledge.indexer import IndexReport, index, matching_files
from gateway.knowledge.ranking import VectorIndex, fuse
from gateway.knowledge.settings import Collection
from gateway.store.abc import KnowledgeStore
from gateway.store.records import Passage

# Passages one search returns at most, and characters of passage text in one answer at most
# (each passage's share cut at a word, marked "…").
MAX_K = MAX_PASSAGES
MAX_RESULT_CHARS = 12_000
# Candidates each ranking hands to the fusion: deeper than k, so a passage second in both
# rankings can win over one first in a single ranking.
CANDIDATES = 50


class Ranking(StrEnum):
    LEXICAL = "lexical"
    EMBEDDING = "embedding"
    FUSED = "fused"


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float

    @property
    def citation(self) -> str:
        """`file#heading`, then the lines, or the page of a PDF."""
        p = self.passage
        anchor = f"#{p.heading}" if p.heading else ""
        where = f"page {p.page}" if p.page is not None else f"lines {p.line_start}-{p.line_end}"
        return f"{p.path}{anchor} ({where})"

    def as_dict(self, max_chars: int) -> dict[str, Any]:
        return {
            "citation": self.citation,
            "score": round(self.score, 6),
            "text": _shorten(self.passage.text, max_chars),
        }


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 1)
    return text[: cut if cut > 0 else limit - 1] + "…"


class Library:
    """The `knowledge:` collections over `store`; `aclose()` it (it may hold HTTP clients).

    A library made without a store (the tool's, shared by every call) is given one per call.
    """

    def __init__(
        self,
        collections: Mapping[str, Collection],
        store: KnowledgeStore | None = None,
        *,
        models: Mapping[str, Mapping[str, Any]] | None = None,
        base_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.collections = dict(collections)
        self.store = store
        self.base_dir = base_dir or Path.cwd()
        self._profiles = load_profiles(models or {})
        self._environ = environ
        self._embedders: dict[str, Embedder] = {}
        self._hosted: dict[str, VectorStores] = {}
        self._vector_store_ids: dict[str, str] = {}
        # Each collection's vectors as last read, with the version they were read at.
        self._vectors: dict[str, tuple[tuple[int, Any], VectorIndex[int]]] = {}

    def collection(self, name: str) -> Collection:
        found = self.collections.get(name)
        if found is None:
            raise UnknownCollection(name, sorted(self.collections))
        return found

    def embedder(self, name: str) -> Embedder | None:
        """The embedder of collection `name`, or None for a lexical-only collection."""
        profile_name = self.collection(name).embeddings
        if profile_name is None:
            return None
        if profile_name not in self._embedders:
            profile = self._profiles.get(profile_name)
            if profile is None:
                raise ConfigError(
                    [f"knowledge.{name}.embeddings: no model profile named {profile_name!r}"]
                )
            self._embedders[profile_name] = Embedder(profile, environ=self._environ)
        return self._embedders[profile_name]

    def _store(self, store: KnowledgeStore | None) -> KnowledgeStore:
        found = store or self.store
        if found is None:
            raise GatewayError("knowledge search needs the gateway's store")
        return found

    def vector_stores(self, name: str) -> VectorStores:
        """The vector stores of hosted collection `name`'s profile."""
        profile_name = self.collection(name).profile
        if profile_name not in self._hosted:
            profile = self._profiles.get(profile_name)
            if profile is None:
                raise ConfigError(
                    [f"knowledge.{name}.profile: no model profile named {profile_name!r}"]
                )
            self._hosted[profile_name] = VectorStores(client_of(profile, self._environ))
        return self._hosted[profile_name]

    async def vector_store_id(self, name: str) -> str:
        """The vector store of hosted collection `name`, for the `file_search` tool."""
        if name not in self._vector_store_ids:
            if not self.collection(name).hosted:
                raise ConfigError([f"knowledge.{name}: not a hosted collection"])
            found = await self.vector_stores(name).find(name)
            if found is None:
                raise GatewayError(f"knowledge.{name}: not uploaded yet (gateway knowledge index)")
            self._vector_store_ids[name] = found
        return self._vector_store_ids[name]

    async def drop_hosted(self, name: str) -> bool:
        """Delete hosted collection `name`'s vector store and files."""
        self._vector_store_ids.pop(name, None)
        return await self.vector_stores(name).delete(name)

    async def prune_hosted(self) -> list[str]:
        """Delete the vector stores of collections no longer configured as hosted (on the
        profiles of those that are); the names of those deleted."""
        hosted = {n for n, c in self.collections.items() if c.hosted}
        gone: list[str] = []
        for stores in {id(self.vector_stores(n)): self.vector_stores(n) for n in hosted}.values():
            for name in await stores.names():
                if name not in hosted and name not in gone:
                    await stores.delete(name)
                    gone.append(name)
        return gone

    async def index(self, name: str, store: KnowledgeStore | None = None) -> IndexReport:
        collection = self.collection(name)
        if collection.hosted:
            self._vector_store_ids.pop(name, None)
            return await self.vector_stores(name).sync(name, collection, self.base_dir)
        return await index(
            self._store(store), name, self.collection(name), self.base_dir, self.embedder(name)
        )

    async def search(
        self,
        name: str,
        query: str,
        k: int = 5,
        ranking: Ranking | None = None,
        *,
        store: KnowledgeStore | None = None,
    ) -> list[Hit]:
        """The `k` best passages of collection `name` for `query`: fused where the collection
        has embeddings, lexical where it has none (or as `ranking` asks)."""
        k = max(1, min(k, MAX_K))
        if self.collection(name).hosted:
            raise ConfigError(
                [f"knowledge.{name} is hosted: the model searches it with file_search"]
            )
        knowledge = self._store(store)
        embedder = self.embedder(name)
        if ranking is None:
            ranking = Ranking.FUSED if embedder is not None else Ranking.LEXICAL
        if ranking is not Ranking.LEXICAL and embedder is None:
            raise ConfigError([f"knowledge.{name}: no `embeddings:` profile to rank by"])
        # One ranking: its k best. Fused: each ranking's deeper candidates.
        depth = max(CANDIDATES, k) if ranking is Ranking.FUSED else k
        lexical: list[tuple[Passage, float]] = []
        if ranking is not Ranking.EMBEDDING:
            lexical = await knowledge.lexical(name, query, depth)
        by_vector: list[tuple[int, float]] = []
        if ranking is not Ranking.LEXICAL and embedder is not None:
            [vector] = await embedder.embed([query])
            by_vector = (await self._vector_index(name, knowledge)).nearest(vector, depth)
        if ranking is Ranking.LEXICAL:
            return [Hit(passage, score) for passage, score in lexical]
        if ranking is Ranking.FUSED:
            ids = [passage.id for passage, _ in lexical]
            ranked = fuse([ids, [i for i, _ in by_vector]], k)
        else:
            ranked = by_vector[:k]
        known = {passage.id: passage for passage, _ in lexical}
        missing = [i for i, _ in ranked if i not in known]
        known.update((p.id, p) for p in await knowledge.passages(missing))
        return [Hit(known[i], score) for i, score in ranked if i in known]

    async def context(self, context: Any, query: str, prompt: str, store: KnowledgeStore) -> str:
        """`prompt` after the passages of a rule's `context:` (gateway.knowledge.context)."""
        from gateway.knowledge.context import with_context

        return await with_context(context, query, prompt, self, store)

    async def files(self, name: str) -> list[tuple[str, bytes]]:
        """Collection `name`'s files as (file name, bytes), those within its `max_file_bytes`:
        what a hosted code interpreter's container gets for `files: ["knowledge:NAME"]`."""
        collection = self.collection(name)

        def read() -> list[tuple[str, bytes]]:
            return [
                (path.name, path.read_bytes())
                for path in matching_files(collection.paths, self.base_dir)
                if path.stat().st_size <= collection.max_file_bytes
            ]

        return await asyncio.to_thread(read)

    async def file_search(self, collections: list[str]) -> dict[str, Any]:
        """The hosted `file_search` tool over these hosted collections' vector stores."""
        from gateway.knowledge.context import file_search_tool

        return await file_search_tool(self, collections)

    async def _vector_index(self, name: str, knowledge: KnowledgeStore) -> VectorIndex[int]:
        """The collection's vectors, read again only when an index changed them (any replica's:
        the version is read from the store on every search)."""
        version = await knowledge.version(name)
        cached = self._vectors.get(name)
        if cached is None or cached[0] != version:
            cached = self._vectors[name] = (version, VectorIndex(await knowledge.vectors(name)))
        return cached[1]

    async def aclose(self) -> None:
        for embedder in self._embedders.values():
            await embedder.aclose()
        self._embedders.clear()
        for stores in self._hosted.values():
            await stores.client.close()
        self._hosted.clear()


def answer(hits: list[Hit], max_chars: int = MAX_RESULT_CHARS) -> list[dict[str, Any]]:
    """Hits as the tool and the prompt carry them: each passage's text within its share."""
    share = max_chars // max(1, len(hits))
    return [hit.as_dict(share) for hit in hits]
