"""The dashboard's knowledge page: each collection's files, passage counts and last index
time, and a search box over one collection (the ranking `knowledge.search` uses).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.api import gateway_of
from gateway.api.auth import Session
from gateway.api.endpoints import Admin
from gateway.errors import GatewayError
from gateway.knowledge import Library, answer
from gateway.store.records import CollectionStats
from gateway.ui.pages import Pages

# Passages shown for a search, and characters of their text in all.
SHOWN = 5
SHOWN_CHARS = 8_000


class KnowledgePage:
    """`GET /ui/knowledge[?collection=NAME[&q=QUERY]]`: read-only, so no form token."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    async def __call__(self, request: Request, session: Session) -> Response:
        admin = Admin(gateway_of(request))
        config, store = admin.config, admin.store
        stats = {s.name: s for s in await store.knowledge.collections()}
        names = sorted(set(config.knowledge) | set(stats))
        selected = request.query_params.get("collection") or (names[0] if names else None)
        query = request.query_params.get("q", "").strip()[:2000]
        hits: list[dict[str, Any]] = []
        problem = None
        if selected and query:
            library = Library(
                config.knowledge, store.knowledge, models=config.models, base_dir=config.base_dir
            )
            try:
                hits = answer(await library.search(selected, query, SHOWN), SHOWN_CHARS)
            except GatewayError as exc:
                problem = str(exc)
            finally:
                await library.aclose()
        collections = [_row(name, config.knowledge.get(name), stats.get(name)) for name in names]
        files = await store.knowledge.files(selected) if selected else []
        return self.pages.render(
            request,
            session,
            "knowledge.html",
            collections=collections,
            selected=selected,
            files=[{**vars_of(f), "indexed_at": f.indexed_at.isoformat()} for f in files],
            query=query,
            hits=hits,
            search_problem=problem,
        )


def _row(name: str, collection: Any, stats: CollectionStats | None) -> dict[str, Any]:
    last = stats.last_indexed if stats else None
    return {
        "name": name,
        "mode": _mode(collection),
        "files": stats.files if stats else 0,
        "passages": stats.passages if stats else 0,
        "embedded": stats.embedded if stats else 0,
        "last_indexed": last.isoformat() if last else None,
    }


def vars_of(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}


def _mode(collection: Any) -> str:
    if collection is None:
        return "not configured"
    if collection.hosted:
        return "hosted"
    return f"embeddings: {collection.embeddings}" if collection.embeddings else "lexical"
