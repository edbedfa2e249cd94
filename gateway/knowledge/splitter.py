"""Splitting a file's blocks into passages: consecutive paragraphs under one heading path are
joined up to `passage_chars`; a longer paragraph is cut at sentence or word ends, and each
following piece repeats the last `overlap_chars` of the one before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.knowledge.loaders import Block

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
HEADING_SEPARATOR = " > "


@dataclass(frozen=True)
class Piece:
    """A passage before it is stored: its heading path as text, lines (or page), its text."""

    heading: str
    text: str
    line_start: int
    line_end: int
    page: int | None


def split(blocks: list[Block], passage_chars: int, overlap_chars: int) -> list[Piece]:
    pieces: list[Piece] = []
    current: list[Block] = []

    def flush() -> None:
        if current:
            first, last = current[0], current[-1]
            text = "\n\n".join(b.text for b in current)
            pieces.append(Piece(_heading(first), text, first.line_start, last.line_end, first.page))
            current.clear()

    for block in blocks:
        if current and (
            block.headings != current[0].headings
            or block.page != current[0].page
            or sum(len(b.text) + 2 for b in current) + len(block.text) > passage_chars
        ):
            flush()
        if len(block.text) > passage_chars:
            pieces += [
                Piece(_heading(block), text, block.line_start, block.line_end, block.page)
                for text in _cut(block.text, passage_chars, overlap_chars)
            ]
            continue
        current.append(block)
    flush()
    return pieces


def _heading(block: Block) -> str:
    return HEADING_SEPARATOR.join(block.headings)


def _cut(text: str, size: int, overlap: int) -> list[str]:
    """`text` in pieces of at most `size` characters, ending at a sentence (else a word) end
    where one is in the second half, each after the first starting `overlap` characters back."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            window = text[start:end]
            cut = max((m.start() for m in _SENTENCE_END.finditer(window)), default=-1)
            if cut < size // 2:
                cut = window.rfind(" ")
            if cut >= size // 2:
                end = start + cut
        pieces.append(text[start:end].strip())
        if end >= len(text):
            break
        # Back by the overlap, to a word start, but always forward of the previous start.
        back = max(start + 1, end - overlap)
        space = text.find(" ", back, end)
        start = space + 1 if overlap and space != -1 else (back if overlap else end)
    return [piece for piece in pieces if piece]
