"""What the knowledge tool family is configured with, from `knowledge:` and `models:`.

The collections' settings model is `gateway.config.KnowledgeCollection` (the config layer
validates it); here it is `Collection`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from gateway.config import MAX_PASSAGES, KnowledgeCollection

Collection = KnowledgeCollection
__all__ = ["MAX_PASSAGES", "Collection", "KnowledgeConfig", "handlers_with_knowledge"]


class KnowledgeConfig(Protocol):
    """What `handlers_with_knowledge` reads of the gateway's `Config`."""

    handlers: dict[str, dict[str, Any]]
    knowledge: dict[str, Collection]
    models: dict[str, dict[str, Any]]
    base_dir: Path


def handlers_with_knowledge(config: KnowledgeConfig) -> dict[str, dict[str, Any]]:
    """The `handlers:` blocks, with the `knowledge` family's completed from `knowledge:` and
    `models:`: what the `knowledge.search` tool searches and embeds queries with. Without
    collections or a block of its own the family is left out: its settings would be the
    defaults, and validating them at start would import the library for nothing."""
    if not config.knowledge and "knowledge" not in config.handlers:
        return dict(config.handlers)
    own = dict(config.handlers.get("knowledge") or {})
    own.update(
        collections={name: c.model_dump() for name, c in config.knowledge.items()},
        models=dict(config.models),
        base_dir=str(config.base_dir),
    )
    return {**config.handlers, "knowledge": own}
