#!/usr/bin/env python3
"""Knowledge retrieval speed: indexing a generated corpus, re-indexing it unchanged, and
lexical queries, on a fresh SQLite store.

  index     --files (500) Markdown files of --sections (20) headed sections each (10,000
            passages by default), generated from a fixed vocabulary with a fixed seed, indexed
            by `Library.index` (read, hash, split, write through the store's journal).
  reindex   the same folder again, unchanged: every file read and hashed, nothing written.
            Target: <= 10 % of the first index time.
  query     --queries (1,000) queries of 3 to 6 words of the vocabulary, k = 5, through
            `Library.search` (FTS5 BM25 in the store, then the passages read back):
            p50 / p99. Targets: p50 <= 5 ms, p99 <= 20 ms. Baseline, same run: the same FTS5
            query alone through the standard library's sqlite3 on the same file, the floor
            the store's path is compared with.
  size      the store's files on disk (database and WAL) after indexing.
  fused     with --embeddings: the corpus again as a collection with embeddings from the
            deterministic loopback server (gateway/testing/fake_embeddings.py): index time
            with embedding, and fused query p50 / p99 (vectors compared in the gateway).

Targets are reported, not enforced.

Usage:  bench/knowledge [--files 500] [--sections 20] [--queries 1000] [--embeddings]
                        [--json FILE] [--keep]
        (re-executes itself under the repo's .venv python)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Arguments, ensure_venv, write_json

TMP = tempfile.gettempdir()

TARGET_P50_MS = 5.0
TARGET_P99_MS = 20.0
TARGET_REINDEX = 0.10


def vocabulary(rng: random.Random) -> list[str]:
    """3,000 pronounceable words, so BM25 sees a realistic spread of rare and common terms."""
    consonants, vowels = "bcdfghklmnprstvz", "aeiou"
    words: set[str] = set()
    while len(words) < 3000:
        syllables = rng.randint(2, 4)
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables)))
    return sorted(words)


def generate(folder: Path, files: int, sections: int, words: list[str], seed: int) -> None:
    rng = random.Random(seed)
    # Zipf-like: a few words are everywhere, most are rare, as in real text.
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    for number in range(files):
        lines = [f"# Runbook {number}", ""]
        for section in range(sections):
            title = " ".join(rng.choices(words, weights, k=3))
            text = " ".join(rng.choices(words, weights, k=rng.randint(60, 90)))
            lines += [f"## {section}. {title}", "", text, ""]
        (folder / f"runbook-{number:04}.md").write_text("\n".join(lines), encoding="utf-8")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from gateway.knowledge import Collection, Library
    from gateway.store import Store
    from gateway.store.knowledge import query_terms
    from gateway.store.knowledge_sqlite import RANK, match

    rng = random.Random(19)
    words = vocabulary(rng)
    corpus = workdir / "corpus"
    corpus.mkdir()
    generate(corpus, args.files, args.sections, words, seed=19)
    database = workdir / "gateway.db"
    store = Store(f"sqlite:///{database}")
    await store.open()
    library = Library({"kb": Collection(paths=["corpus/*.md"])}, store.knowledge, base_dir=workdir)
    try:
        started = time.perf_counter()
        first = await library.index("kb")
        index_s = time.perf_counter() - started
        started = time.perf_counter()
        again = await library.index("kb")
        reindex_s = time.perf_counter() - started
        assert again.passages == 0 and again.unchanged == args.files, again

        queries = [
            " ".join(rng.choices(words[:1500], k=rng.randint(3, 6))) for _ in range(args.queries)
        ]
        for query in queries[:50]:  # warm the pool and the page cache
            await library.search("kb", query, 5)
        timings, empty = [], 0
        for query in queries:
            started = time.perf_counter()
            hits = await library.search("kb", query, 5)
            timings.append((time.perf_counter() - started) * 1000)
            empty += not hits
        embedded = await fused(workdir, store, queries) if args.embeddings else {}
    finally:
        await library.aclose()
        await store.close()

    size = sum(p.stat().st_size for p in workdir.glob("gateway.db*"))  # noqa: ASYNC240
    # The floor: the same FTS5 statement through the standard library, nothing around it.
    conn = sqlite3.connect(database)
    floor = []
    for query in queries:
        started = time.perf_counter()
        conn.execute(
            f"SELECT rowid, -{RANK} FROM knowledge_fts WHERE knowledge_fts MATCH ? "
            f"ORDER BY {RANK} LIMIT 5",
            (match("kb", query_terms(query)),),
        ).fetchall()
        floor.append((time.perf_counter() - started) * 1000)
    conn.close()
    p50, p99 = statistics.median(timings), percentile(timings, 0.99)
    return {
        "files": args.files,
        "passages": first.passages,
        "index_s": round(index_s, 3),
        "reindex_s": round(reindex_s, 3),
        "reindex_ratio": round(reindex_s / index_s, 4),
        "queries": len(queries),
        "queries_without_hit": empty,
        "query_p50_ms": round(p50, 3),
        "query_p99_ms": round(p99, 3),
        "floor_p50_ms": round(statistics.median(floor), 3),
        "floor_p99_ms": round(percentile(floor, 0.99), 3),
        "store_bytes": size,
        **embedded,
    }


async def fused(workdir: Path, store: Any, queries: list[str]) -> dict[str, Any]:
    """The same corpus as a collection with embeddings (the deterministic loopback server):
    index time with embedding, and fused query p50/p99 (query embedded, every vector of the
    collection compared in the gateway, both rankings fused)."""
    from gateway.knowledge import Collection, Library
    from gateway.knowledge.ranking import VectorIndex
    from gateway.testing.fake_embeddings import EmbeddingServer, embed

    with EmbeddingServer() as server:
        library = Library(
            {"kbv": Collection(paths=["corpus/*.md"], embeddings="embed")},
            store.knowledge,
            models={"embed": server.block()},
            base_dir=workdir,
        )
        try:
            started = time.perf_counter()
            report = await library.index("kbv")
            index_s = time.perf_counter() - started
            timings = []
            for query in queries:
                started = time.perf_counter()
                await library.search("kbv", query, 5)
                timings.append((time.perf_counter() - started) * 1000)
            # The vector ranking alone, as a search does it once the vectors are cached: the
            # collection's version read, then every vector compared with a query vector made
            # beforehand (no embeddings request).
            vectors = [embed(query) for query in queries]
            index = VectorIndex(await store.knowledge.vectors("kbv"))
            ranking = []
            for vector in vectors:
                started = time.perf_counter()
                await store.knowledge.version("kbv")
                index.nearest(vector, 50)
                ranking.append((time.perf_counter() - started) * 1000)
        finally:
            await library.aclose()
    return {
        "embedded_passages": report.passages,
        "embedded_index_s": round(index_s, 3),
        "embedding_tokens": report.tokens,
        "fused_p50_ms": round(statistics.median(timings), 3),
        "fused_p99_ms": round(percentile(timings, 0.99), 3),
        "vector_p50_ms": round(statistics.median(ranking), 3),
        "vector_p99_ms": round(percentile(ranking, 0.99), 3),
    }


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Arguments(__doc__, quick={"files": 50, "queries": 100})
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--sections", type=int, default=20)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--embeddings", action="store_true", help="also index with embeddings, query fused"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser.parse(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from gateway import log as gateway_log

    gateway_log.configure("warning")
    workdir = Path(tempfile.mkdtemp(prefix="bench-knowledge-", dir=TMP))
    try:
        result = asyncio.run(run(workdir, args))
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU(s)"
    print(f"machine: {machine}, Python {platform.python_version()}")
    print(
        f"index    {result['files']} files, {result['passages']} passages "
        f"in {result['index_s']} s; store {result['store_bytes'] / 1e6:.1f} MB"
    )
    print(
        f"reindex  unchanged: {result['reindex_s']} s = {result['reindex_ratio']:.1%} of the first "
        f"(target <= {TARGET_REINDEX:.0%}: {verdict(result['reindex_ratio'] <= TARGET_REINDEX)})"
    )
    fast = result["query_p50_ms"] <= TARGET_P50_MS and result["query_p99_ms"] <= TARGET_P99_MS
    print(
        f"query    {result['queries']} lexical queries, k=5: p50 {result['query_p50_ms']} ms, "
        f"p99 {result['query_p99_ms']} ms (targets {TARGET_P50_MS:g} / {TARGET_P99_MS:g} ms: "
        f"{verdict(fast)}); "
        f"{result['queries_without_hit']} without a hit"
    )
    print(
        f"floor    the FTS5 query alone (stdlib sqlite3): p50 {result['floor_p50_ms']} ms, "
        f"p99 {result['floor_p99_ms']} ms; gateway/floor p50 = "
        f"{result['query_p50_ms'] / max(result['floor_p50_ms'], 1e-6):.2f}x"
    )
    if args.embeddings:
        print(
            f"fused    {result['embedded_passages']} passages embedded (loopback server, "
            f"{result['embedding_tokens']} tokens) in {result['embedded_index_s']} s; "
            f"{result['queries']} fused queries: p50 {result['fused_p50_ms']} ms, "
            f"p99 {result['fused_p99_ms']} ms (reported, no target); the vector ranking "
            f"alone: p50 {result['vector_p50_ms']} ms, p99 {result['vector_p99_ms']} ms"
        )
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    ensure_venv(__file__)
    sys.exit(main(sys.argv[1:]))
