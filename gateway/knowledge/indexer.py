"""Indexing a collection, incrementally: files are compared by content hash with what the store
has, so an unchanged file is not parsed, split, embedded or written again, and a file gone
from disk leaves no passage behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from gateway.errors import UnreadableFile
from gateway.knowledge import loaders
from gateway.knowledge.embeddings import Embedder
from gateway.knowledge.ranking import pack
from gateway.knowledge.settings import Collection
from gateway.knowledge.splitter import split
from gateway.store.abc import KnowledgeStore
from gateway.store.records import NewPassage

log = structlog.get_logger("gateway.knowledge")

# Files written at once: their commits are grouped by the store's journal.
CONCURRENT_WRITES = 32


@dataclass
class IndexReport:
    """What one indexing of a collection did."""

    collection: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    passages: int = 0
    # Files matched but not indexed, each with why (too large, unreadable).
    skipped: list[str] = field(default_factory=list)
    tokens: int = 0
    cost: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Found:
    key: str
    path: Path
    data: bytes
    sha256: str


def matching_files(patterns: list[str], base_dir: Path) -> list[Path]:
    """Files the patterns match (relative to `base_dir`), in a known format, sorted."""
    found: set[Path] = set()
    for pattern in patterns:
        matches = [Path(pattern)] if Path(pattern).is_absolute() else base_dir.glob(pattern)
        found.update(p for p in matches if p.is_file() and p.suffix.lower() in loaders.FORMATS)
    return sorted(found)


def key_of(path: Path, base_dir: Path) -> str:
    """The file's name in the store and in citations: relative to the config's folder."""
    try:
        return path.resolve().relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _read(
    collection: Collection, base_dir: Path, fingerprint: str, report: IndexReport
) -> list[_Found]:
    found = []
    for path in matching_files(collection.paths, base_dir):
        size = path.stat().st_size
        if size > collection.max_file_bytes:
            report.skipped.append(f"{path}: {size} bytes, over max_file_bytes")
            continue
        data = path.read_bytes()
        # The settings that shape passages are part of the hash: changing them re-indexes.
        digest = hashlib.sha256(fingerprint.encode() + b"\0" + data).hexdigest()
        found.append(_Found(key_of(path, base_dir), path, data, digest))
    return found


def fingerprint(collection: Collection) -> str:
    return f"{collection.passage_chars}/{collection.overlap_chars}/{collection.embeddings or '-'}"


async def index(
    store: KnowledgeStore,
    name: str,
    collection: Collection,
    base_dir: Path,
    embedder: Embedder | None = None,
) -> IndexReport:
    """Bring the store's copy of collection `name` in line with its files on disk."""
    started = time.perf_counter()
    report = IndexReport(name)
    tokens_before = embedder.usage.tokens if embedder else 0
    cost_before = embedder.usage.cost if embedder else 0.0
    found = await asyncio.to_thread(_read, collection, base_dir, fingerprint(collection), report)
    stored = {f.path: f.sha256 for f in await store.files(name)}
    changed = [f for f in found if stored.get(f.key) != f.sha256]
    report.unchanged = len(found) - len(changed)
    report.removed = sorted(set(stored) - {f.key for f in found})
    await store.remove_files(name, report.removed)

    async def write(one: _Found) -> None:
        try:
            passages = await _passages(one, collection, embedder)
        except UnreadableFile as exc:
            report.skipped.append(f"{one.path}: {exc}")
            if one.key in stored:  # what it said before is no longer what the file says
                await store.remove_files(name, [one.key])
                report.removed.append(one.key)
            return
        await store.replace_file(name, one.key, one.sha256, passages)
        (report.updated if one.key in stored else report.added).append(one.key)
        report.passages += len(passages)

    for start in range(0, len(changed), CONCURRENT_WRITES):
        await asyncio.gather(*(write(f) for f in changed[start : start + CONCURRENT_WRITES]))
    report.added.sort()
    report.updated.sort()
    if embedder is not None:
        report.tokens = embedder.usage.tokens - tokens_before
        report.cost = embedder.usage.cost - cost_before
    report.seconds = time.perf_counter() - started
    log.info(
        "knowledge indexed",
        collection=name,
        added=len(report.added),
        updated=len(report.updated),
        removed=len(report.removed),
        unchanged=report.unchanged,
        passages=report.passages,
        skipped=len(report.skipped),
        tokens=report.tokens,
    )
    return report


async def _passages(
    found: _Found, collection: Collection, embedder: Embedder | None
) -> list[NewPassage]:
    blocks = await asyncio.to_thread(loaders.load, found.path, found.data)
    pieces = split(blocks, collection.passage_chars, collection.overlap_chars)
    vectors: list[bytes | None] = [None] * len(pieces)
    if embedder is not None and pieces:
        embedded = await embedder.embed([_embedded_text(p.heading, p.text) for p in pieces])
        vectors = [pack(vector) for vector in embedded]
    return [
        NewPassage(
            position=position,
            heading=piece.heading,
            line_start=piece.line_start,
            line_end=piece.line_end,
            page=piece.page,
            text=piece.text,
            embedding=vector,
        )
        for position, (piece, vector) in enumerate(zip(pieces, vectors, strict=True))
    ]


def _embedded_text(heading: str, text: str) -> str:
    # The heading says what a paragraph is about when its own words do not.
    return f"{heading}\n\n{text}" if heading else text
