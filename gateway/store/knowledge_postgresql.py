"""Lexical ranking of knowledge passages on PostgreSQL: full-text search over the generated
`tsv` column (heading weighted A, text B; migration 0007), ranked by `ts_rank`.
"""

from __future__ import annotations

import re

from sqlalchemy import Float, Integer, TextualSelect, text

# ts_rank normalization 1: divided by 1 + log(length), so a long passage does not win by size.
NORMALIZATION = 1
_LEXEME = re.compile(r"[^\W_]+")


def lexical(collection: str, terms: list[str], limit: int) -> TextualSelect:
    # Any of the words (|); each a bare lexeme, so nothing in a query is tsquery syntax.
    words = [word for term in terms for word in _LEXEME.findall(term)]
    return (
        text(
            "SELECT id, ts_rank(tsv, query, :normalization) AS score "
            "FROM knowledge_passages, to_tsquery('english', :match) AS query "
            "WHERE collection = :collection AND tsv @@ query "
            "ORDER BY score DESC, id LIMIT :limit"
        )
        .bindparams(
            match=" | ".join(words) or "''",
            collection=collection,
            limit=limit,
            normalization=NORMALIZATION,
        )
        .columns(id=Integer, score=Float)
    )
