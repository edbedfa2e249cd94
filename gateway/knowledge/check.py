"""What `gateway check` says of the `knowledge:` collections beyond their validation: a pattern
that matches no file is a warning (a typo, or documents not yet written), not an error.
"""

from __future__ import annotations

from gateway.knowledge.indexer import matching_files
from gateway.knowledge.settings import KnowledgeConfig


def warnings(config: KnowledgeConfig) -> list[str]:
    found = []
    for name, collection in config.knowledge.items():
        for pattern in collection.paths:
            if not matching_files([pattern], config.base_dir):
                found.append(
                    f"knowledge.{name}: {pattern!r} matches no file (.md, .txt, .html or .pdf) "
                    f"under {config.base_dir}"
                )
    return found
