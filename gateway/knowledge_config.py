"""`knowledge:` in gateway.yaml: retrieval collections (docs/knowledge.md), validated with the
rest of the config (`gateway.config` re-exports these)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Passages one knowledge search returns at most (the tool's `k`, a rule's `context.k`).
MAX_PASSAGES = 20
# A collection's name is a key in the store and a word in the tool's arguments.
COLLECTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")


class KnowledgeCollection(BaseModel):
    """One entry of `knowledge:`: files (glob patterns, relative to the config's folder), how
    they are split into passages, and the profile that embeds them, or hosted search
    (docs/knowledge.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    paths: list[str] = Field(min_length=1, description="glob patterns, ** for any folders")
    # A model profile under `models:` whose /v1/embeddings endpoint embeds the passages;
    # none: lexical ranking only.
    embeddings: str | None = None
    # Upload the files to an OpenAI vector store and offer the hosted `file_search` tool.
    hosted: bool = False
    # The Responses profile under `models:` whose API holds the vector store (hosted only).
    profile: str = "default"
    # Characters per passage (at most), and how many the next passage repeats.
    passage_chars: int = Field(1200, ge=200, le=20_000)
    overlap_chars: int = Field(150, ge=0)
    # Seconds between re-indexings while the gateway runs (it indexes once at start);
    # none: only at start and by `gateway knowledge index`.
    reindex_every: float | None = Field(None, ge=60)
    # Files larger than this are skipped with a warning (a PDF of scans, a log dump).
    max_file_bytes: int = Field(20 * 1024 * 1024, gt=0)

    @model_validator(mode="after")
    def _overlap_within_passage(self) -> KnowledgeCollection:
        if self.overlap_chars >= self.passage_chars // 2:
            raise ValueError(
                f"overlap_chars ({self.overlap_chars}) must be under half of passage_chars "
                f"({self.passage_chars})"
            )
        return self


def _collection_names(
    collections: dict[str, KnowledgeCollection],
) -> dict[str, KnowledgeCollection]:
    """The `knowledge:` block's names checked (a validator of `Config.knowledge`)."""
    for name in collections:
        if not COLLECTION_NAME.fullmatch(name):
            raise ValueError(f"collection name {name!r} may only use letters, digits, _ and -")
    return collections


def knowledge_problems(
    collections: dict[str, KnowledgeCollection], models: dict[str, Any]
) -> list[tuple[tuple[str, ...], str]]:
    """Each collection whose `embeddings:` names no profile under `models:`, and each hosted
    one whose `profile:` is missing or not on the Responses API, at that field."""
    known = ", ".join(sorted(models)) or "none"
    found: list[tuple[tuple[str, ...], str]] = [
        (
            ("knowledge", name, "embeddings"),
            f"no profile named {c.embeddings!r} under `models:` (defined: {known})",
        )
        for name, c in collections.items()
        if c.embeddings is not None and c.embeddings not in models
    ]
    for name, c in collections.items():
        if not c.hosted:
            continue
        profile = models.get(c.profile)
        if profile is None:
            found.append(
                (
                    ("knowledge", name, "profile"),
                    f"hosted: no profile named {c.profile!r} under `models:` (defined: {known})",
                )
            )
        elif dict(profile).get("api", "responses") != "responses":
            found.append(
                (
                    ("knowledge", name, "profile"),
                    f"hosted: profile {c.profile!r} is not on the Responses API "
                    "(file_search is a Responses tool)",
                )
            )
    return found
