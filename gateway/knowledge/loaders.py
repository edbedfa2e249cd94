"""Reading knowledge files into blocks of text that know where they are: the heading path,
the line range (the page for PDF). Markdown, plain text, HTML (text, not tags) and PDF.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from gateway.errors import UnreadableFile


@dataclass(frozen=True)
class Block:
    """A paragraph (or heading-less run of text) with its place in the file."""

    headings: tuple[str, ...]
    text: str
    line_start: int
    line_end: int
    page: int | None = None


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def markdown(content: str) -> list[Block]:
    """Paragraphs under their heading path; a fenced code block stays whole."""
    blocks: list[Block] = []
    headings: list[tuple[int, str]] = []
    lines: list[str] = []
    start = 0
    fenced = False

    def flush(end: int) -> None:
        text = "\n".join(lines).strip()
        if text:
            path = tuple(title for _, title in headings)
            blocks.append(Block(path, text, start, end))
        lines.clear()

    for number, line in enumerate(content.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading:
            flush(number - 1)
            level = len(heading.group(1))
            headings[:] = [h for h in headings if h[0] < level] + [(level, heading.group(2))]
            continue
        if not line.strip() and not fenced:
            flush(number - 1)
            continue
        if not lines:
            start = number
        lines.append(line)
    flush(len(content.splitlines()))
    return blocks


def plain(content: str) -> list[Block]:
    """Paragraphs (separated by blank lines), with no headings."""
    return [Block((), b.text, b.line_start, b.line_end) for b in _paragraphs(content, None)]


def _paragraphs(content: str, page: int | None) -> list[Block]:
    blocks: list[Block] = []
    lines: list[str] = []
    start = 0
    for number, line in enumerate([*content.splitlines(), ""], 1):
        if line.strip():
            if not lines:
                start = number
            lines.append(" ".join(line.split()))
        elif lines:
            blocks.append(Block((), " ".join(lines), start, number - 1, page))
            lines = []
    return blocks


class _HtmlText(HTMLParser):
    """The text of an HTML page as blocks: headings set the path, block elements end a block."""

    BLOCK_TAGS = frozenset(
        [
            "p",
            "div",
            "li",
            "ul",
            "ol",
            "pre",
            "table",
            "tr",
            "td",
            "th",
            "section",
            "article",
            "header",
            "footer",
            "blockquote",
            "br",
            "dt",
            "dd",
        ]
    )
    SKIPPED = frozenset({"script", "style", "head", "template", "noscript", "nav"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.headings: list[tuple[int, str]] = []
        self.text: list[str] = []
        self.start = 0
        self.skipping = 0
        self.heading_level = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.flush()
            self.heading_level = int(tag[1])
        elif tag in self.BLOCK_TAGS:
            self.flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self.heading_level:
            title = " ".join("".join(self.text).split())
            level = self.heading_level
            self.headings = [h for h in self.headings if h[0] < level] + [(level, title)]
            self.text = []
            self.heading_level = 0
        elif tag in self.BLOCK_TAGS:
            self.flush()

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if not self.text and data.strip():
            self.start = self.getpos()[0]
        self.text.append(data)

    def flush(self) -> None:
        if self.heading_level:
            return
        text = " ".join("".join(self.text).split())
        if text:
            path = tuple(title for _, title in self.headings)
            self.blocks.append(Block(path, text, self.start, self.getpos()[0]))
        self.text = []


def html(content: str) -> list[Block]:
    parser = _HtmlText()
    parser.feed(content)
    parser.close()
    parser.flush()
    return parser.blocks


def pdf(data: bytes) -> list[Block]:
    """Each page's paragraphs, with the page number (from 1); lines count within the page."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        # Layout mode keeps the vertical space between paragraphs as blank lines.
        pages = [page.extract_text(extraction_mode="layout") or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError) as exc:
        raise UnreadableFile(f"not a readable PDF: {exc}") from exc
    return [block for number, text in enumerate(pages, 1) for block in _paragraphs(text, number)]


TEXT_LOADERS: dict[str, Callable[[str], list[Block]]] = {
    ".md": markdown,
    ".markdown": markdown,
    ".txt": plain,
    ".text": plain,
    ".rst": plain,
    ".html": html,
    ".htm": html,
}
FORMATS = frozenset([*TEXT_LOADERS, ".pdf"])


def load(path: Path, data: bytes) -> list[Block]:
    """The blocks of a file, read as its suffix says; `UnreadableFile` if it cannot be."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return pdf(data)
    loader = TEXT_LOADERS.get(suffix)
    if loader is None:
        raise UnreadableFile(f"{path.name}: not a known format ({', '.join(sorted(FORMATS))})")
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"{path.name}: not UTF-8 text ({exc.reason})") from exc
    return loader(content)
