"""Lexical ranking of knowledge passages on SQLite: FTS5 with BM25 (migration 0007's table).

The heading counts twice the text; SQLite's `bm25()` is lower-is-better, so it is negated.
"""

from __future__ import annotations

from sqlalchemy import TextClause, text

# bm25() weights per FTS5 column: collection (not searched), heading, text.
RANK = "bm25(knowledge_fts, 0.0, 2.0, 1.0)"


def lexical(collection: str, terms: list[str], limit: int) -> TextClause:
    # Each word quoted: FTS5 reads it as a term, never as its query syntax (NEAR, -, *, :).
    match = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
    return text(
        f"SELECT rowid AS id, -{RANK} AS score FROM knowledge_fts "
        "WHERE knowledge_fts MATCH :match AND collection = :collection "
        f"ORDER BY {RANK} LIMIT :limit"
    ).bindparams(match=match, collection=collection, limit=limit)
