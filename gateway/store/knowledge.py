"""The knowledge store: files of each collection by content hash, their passages, and search.

What both dialects share is here; lexical ranking is each dialect's own (`knowledge_sqlite`,
`knowledge_postgresql`), chosen once by the store's dialect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, update

from gateway.store import knowledge_postgresql, knowledge_sqlite
from gateway.store.part import Part, now_utc
from gateway.store.records import (
    CollectionStats,
    KnowledgeFile,
    NewPassage,
    Passage,
    utc,
)
from gateway.store.schema import knowledge_files as files
from gateway.store.schema import knowledge_passages as passages

# A query is searched as its words, any of them (OR); a question's glue words match nearly
# every passage and only slow the ranking down.
MAX_QUERY_TERMS = 32
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "our",
        "should",
        "that",
        "the",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)
_WORD = re.compile(r"[^\W_]+")


def query_terms(query: str) -> list[str]:
    """The distinct words of `query` worth searching, lower-cased, at most MAX_QUERY_TERMS."""
    found: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        if word not in STOP_WORDS and len(found) < MAX_QUERY_TERMS:
            found[word] = None
    return list(found)


class Knowledge(Part):
    """`KnowledgeStore` on `knowledge_files` and `knowledge_passages` (and the FTS5 table)."""

    async def files(self, collection: str) -> list[KnowledgeFile]:
        query = select(files).where(files.c.collection == collection).order_by(files.c.path)
        return [
            KnowledgeFile(
                collection=row.collection,
                path=row.path,
                sha256=row.sha256,
                passages=row.passages,
                indexed_at=utc(row.indexed_at),  # type: ignore[arg-type]
            )
            for row in await self._rows(query)
        ]

    async def replace_file(
        self, collection: str, path: str, sha256: str, new: Sequence[NewPassage]
    ) -> None:
        now = now_utc()
        values = {"sha256": sha256, "passages": len(new), "indexed_at": now}

        def change(conn: Connection) -> None:
            where = (files.c.collection == collection) & (files.c.path == path)
            file_id = conn.execute(select(files.c.id).where(where)).scalar_one_or_none()
            if file_id is None:
                file_id = conn.execute(
                    insert(files)
                    .values(collection=collection, path=path, **values)
                    .returning(files.c.id)
                ).scalar_one()
            else:
                conn.execute(delete(passages).where(passages.c.file_id == file_id))
                conn.execute(update(files).where(files.c.id == file_id).values(**values))
            if new:
                conn.execute(
                    insert(passages),
                    [_row(file_id, collection, passage) for passage in new],
                )

        await self.journal.apply(change)

    async def remove_files(self, collection: str, paths: Iterable[str]) -> int:
        gone = list(paths)
        if not gone:
            return 0
        where = (files.c.collection == collection) & files.c.path.in_(gone)
        return await self.journal.apply(lambda conn: _remove(conn, where))

    async def drop(self, collection: str) -> int:
        where = files.c.collection == collection
        return await self.journal.apply(lambda conn: _remove(conn, where))

    async def collections(self) -> list[CollectionStats]:
        counts = (
            select(
                files.c.collection,
                func.count(files.c.id).label("files"),
                func.coalesce(func.sum(files.c.passages), 0).label("passages"),
                func.max(files.c.indexed_at).label("last_indexed"),
            )
            .group_by(files.c.collection)
            .order_by(files.c.collection)
        )
        embedded = select(passages.c.collection, func.count().label("n")).where(
            passages.c.embedding.is_not(None)
        )
        vectors = {
            row.collection: row.n
            for row in await self._rows(embedded.group_by(passages.c.collection))
        }
        return [
            CollectionStats(
                name=row.collection,
                files=row.files,
                passages=int(row.passages),
                embedded=vectors.get(row.collection, 0),
                last_indexed=utc(row.last_indexed),
            )
            for row in await self._rows(counts)
        ]

    async def lexical(self, collection: str, query: str, limit: int) -> list[tuple[Passage, float]]:
        terms = query_terms(query)
        if not terms:
            return []
        dialect = knowledge_sqlite if self.dialect.name == "sqlite" else knowledge_postgresql
        ranked = dialect.lexical(collection, terms, limit).subquery("ranked")
        # The passages come with their ranking, in one round trip.
        query_ = (
            select(passages, files.c.path, ranked.c.score)
            .join(ranked, ranked.c.id == passages.c.id)
            .join(files, files.c.id == passages.c.file_id)
            .order_by(ranked.c.score.desc(), passages.c.id)
        )
        return [(_passage(row), float(row.score)) for row in await self._rows(query_)]

    async def version(self, collection: str) -> tuple[int, datetime | None]:
        query = select(func.count(files.c.id), func.max(files.c.indexed_at)).where(
            files.c.collection == collection
        )
        row: Any = await self._first(query)
        if row is None:
            return 0, None
        return int(row[0]), utc(row[1])

    async def vector_note(self) -> str:
        if self.dialect.name == "sqlite":
            import importlib.util
            import sqlite3

            if not hasattr(sqlite3.Connection, "enable_load_extension"):
                why = "this Python's sqlite3 cannot load extensions such as sqlite-vec"
            elif importlib.util.find_spec("sqlite_vec") is None:
                why = "sqlite-vec is not installed"
            else:
                why = "sqlite-vec is installed, but the gateway does not use it yet"
        else:
            query = text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
            if await self._first(query) is None:
                why = "the pgvector extension is not installed on this PostgreSQL server"
            else:
                why = "pgvector is available, but the gateway does not use it yet"
        return f"vectors are compared in the gateway (the plain fallback): {why}"

    async def vectors(self, collection: str) -> list[tuple[int, bytes]]:
        query = select(passages.c.id, passages.c.embedding).where(
            (passages.c.collection == collection) & passages.c.embedding.is_not(None)
        )
        return [(row.id, row.embedding) for row in await self._rows(query)]

    async def passages(self, ids: Sequence[int]) -> list[Passage]:
        if not ids:
            return []
        query = (
            select(passages, files.c.path)
            .join(files, files.c.id == passages.c.file_id)
            .where(passages.c.id.in_(list(ids)))
        )
        found = {row.id: _passage(row) for row in await self._rows(query)}
        return [found[i] for i in ids if i in found]


def _row(file_id: int, collection: str, passage: NewPassage) -> dict[str, Any]:
    return {
        "file_id": file_id,
        "collection": collection,
        "position": passage.position,
        "heading": passage.heading,
        "line_start": passage.line_start,
        "line_end": passage.line_end,
        "page": passage.page,
        "text": passage.text,
        "embedding": passage.embedding,
    }


def _remove(conn: Connection, where: Any) -> int:
    ids = list(conn.execute(select(files.c.id).where(where)).scalars())
    if ids:
        # Passages one by one through their own table, so SQLite's triggers drop their FTS rows.
        conn.execute(delete(passages).where(passages.c.file_id.in_(ids)))
        conn.execute(delete(files).where(files.c.id.in_(ids)))
    return len(ids)


def _passage(row: Any) -> Passage:
    return Passage(
        id=row.id,
        collection=row.collection,
        path=row.path,
        position=row.position,
        heading=row.heading,
        line_start=row.line_start,
        line_end=row.line_end,
        page=row.page,
        text=row.text,
    )
