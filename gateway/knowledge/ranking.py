"""Ranking passages: cosine similarity over stored vectors, and reciprocal rank fusion.

Vectors are kept as float32 bytes beside the passages and compared here, in the gateway (the
plain fallback: neither sqlite-vec nor pgvector is required); numpy does it when installed.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# Reciprocal rank fusion's constant (Cormack et al. 2009): 60 damps the top ranks' weight.
RRF_K = 60


def pack(vector: Sequence[float]) -> bytes:
    """A vector as stored: float32, little-endian, normalised to length 1 (cosine = dot)."""
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    values = array("f", (x / norm for x in vector))
    if values.itemsize != 4:  # pragma: no cover - every platform Python supports has 4
        raise RuntimeError("float32 arrays are needed")
    return values.tobytes()


def unpack(data: bytes) -> array[float]:
    return array("f", data)


class VectorIndex(Generic[K]):
    """Stored vectors ready to compare with a query: built once per version of a collection,
    so a search does not read and unpack every vector again."""

    def __init__(self, rows: list[tuple[K, bytes]]) -> None:
        sizes = Counter(len(data) for _, data in rows)
        # Vectors of another length were made by another model: they cannot be compared.
        size = sizes.most_common(1)[0][0] if sizes else 0
        same = [(key, data) for key, data in rows if len(data) == size]
        self.keys = [key for key, _ in same]
        self.dimensions = size // 4
        self._rows: Any = [unpack(data) for _, data in same]
        try:
            import numpy as np
        except ImportError:  # pragma: no cover - numpy comes with the charts extra
            return
        matrix = np.frombuffer(b"".join(data for _, data in same), dtype="<f4")
        self._rows = matrix.reshape(len(same), self.dimensions)

    def __len__(self) -> int:
        return len(self.keys)

    def nearest(self, query: Sequence[float], limit: int) -> list[tuple[K, float]]:
        """The `limit` vectors most similar to `query`, best first, with their cosine."""
        if not self.keys or len(query) != self.dimensions:
            return []
        wanted = unpack(pack(query))
        if isinstance(self._rows, list):  # pragma: no cover - without numpy
            pairs = zip(self.keys, self._rows, strict=True)
            scored = [(key, _dot(wanted, row)) for key, row in pairs]
            scored.sort(key=lambda pair: pair[1], reverse=True)
            return scored[:limit]
        import numpy as np

        scores = self._rows @ np.asarray(wanted, dtype="<f4")
        top = np.argsort(-scores, kind="stable")[:limit]
        return [(self.keys[i], float(scores[i])) for i in top]


def by_cosine(
    query: Sequence[float], rows: list[tuple[K, bytes]], limit: int
) -> list[tuple[K, float]]:
    """The `limit` rows most similar to `query`, best first, with their cosine similarity."""
    return VectorIndex(rows).nearest(query, limit)


def _dot(a: array[float], b: array[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def fuse(rankings: Sequence[Sequence[K]], limit: int, k: int = RRF_K) -> list[tuple[K, float]]:
    """Reciprocal rank fusion: each ranking gives an item 1 / (k + rank); the sum orders them.
    Ties keep the order of the first ranking that has the item."""
    scores: dict[K, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, 1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    ordered = sorted(scores.items(), key=lambda pair: pair[1], reverse=True)
    return ordered[:limit]
