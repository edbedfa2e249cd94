"""Lexical ranking of knowledge passages on SQLite: FTS5 with BM25 (migration 0007's table).

The heading counts twice the text; SQLite's `bm25()` is lower-is-better, so it is negated.
A collection is matched by its tag, one token in the index (see migration 0007).
"""

from __future__ import annotations

from sqlalchemy import Float, Integer, TextualSelect, text

# bm25() weights per FTS5 column: tag (matched, not ranked), heading, text.
RANK = "bm25(knowledge_fts, 0.0, 2.0, 1.0)"


def tag(collection: str) -> str:
    """The token that stands for `collection` in the index: 'c' and its name in hex."""
    return "c" + collection.encode().hex()


def match(collection: str, terms: list[str]) -> str:
    """The FTS5 query: the collection's tag, and any of the words in heading or text."""
    # Each word quoted: FTS5 reads it as a term, never as its query syntax (NEAR, -, *, :).
    words = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
    return f'tag : "{tag(collection)}" AND {{heading text}} : ({words})'


def lexical(collection: str, terms: list[str], limit: int) -> TextualSelect:
    return (
        text(
            f"SELECT rowid AS id, -{RANK} AS score FROM knowledge_fts "
            f"WHERE knowledge_fts MATCH :match ORDER BY {RANK} LIMIT :limit"
        )
        .bindparams(match=match(collection, terms), limit=limit)
        .columns(id=Integer, score=Float)
    )
