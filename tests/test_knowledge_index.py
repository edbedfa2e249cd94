"""Indexing knowledge collections into the store, on SQLite and PostgreSQL: incremental by
content hash, every format split along its structure, lexical search through the store."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import UnreadableFile
from gateway.knowledge import Library
from gateway.knowledge.loaders import html, load, markdown
from gateway.knowledge.splitter import split
from gateway.store import Store
from tests.knowledge import collection, copy_corpus
from tests.postgres import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
        await opened.open()
        yield opened
        await opened.close()
        return
    async with fresh_database() as url:
        opened = Store(url)
        await opened.open()
        yield opened
        await opened.close()


@pytest.fixture
async def library(store: Store, tmp_path: Path) -> AsyncIterator[Library]:
    copy_corpus(tmp_path)
    opened = Library({"kb": collection()}, store.knowledge, base_dir=tmp_path)
    yield opened
    await opened.aclose()


async def test_indexing_a_folder_stores_every_file_with_its_passages(
    library: Library, store: Store
) -> None:
    report = await library.index("kb")
    files = {f.path: f for f in await store.knowledge.files("kb")}
    assert sorted(files) == [
        "kb/known-issues.html",
        "kb/policies/refunds.md",
        "kb/policies/security.txt",
        "kb/policies/travel.pdf",
        "kb/runbooks/database-failover.md",
        "kb/runbooks/disk-full.md",
        "kb/runbooks/oncall.md",
        "kb/runbooks/payment-webhooks.md",
    ]
    assert report.added == sorted(files) and report.passages == sum(
        f.passages for f in files.values()
    )
    assert all(len(f.sha256) == 64 for f in files.values())
    [stats] = await store.knowledge.collections()
    assert (stats.name, stats.files, stats.passages) == ("kb", 8, report.passages)


async def test_reindexing_an_unchanged_folder_does_no_work(library: Library, store: Store) -> None:
    await library.index("kb")
    before = await store.knowledge.files("kb")
    again = await library.index("kb")
    assert (again.added, again.updated, again.removed, again.passages) == ([], [], [], 0)
    assert again.unchanged == 8
    assert await store.knowledge.files("kb") == before  # not even indexed_at moved


async def test_a_changed_file_is_reindexed_and_a_deleted_one_leaves_nothing(
    library: Library, store: Store, tmp_path: Path
) -> None:
    await library.index("kb")
    before = {f.path: f for f in await store.knowledge.files("kb")}
    refunds = tmp_path / "kb/policies/refunds.md"
    refunds.write_text(
        refunds.read_text().replace("within 30 days", "within 45 days"), encoding="utf-8"
    )
    (tmp_path / "kb/runbooks/disk-full.md").unlink()

    report = await library.index("kb")

    assert report.updated == ["kb/policies/refunds.md"]
    assert report.removed == ["kb/runbooks/disk-full.md"]
    assert report.unchanged == 6
    after = {f.path: f for f in await store.knowledge.files("kb")}
    assert "kb/runbooks/disk-full.md" not in after
    assert after["kb/policies/refunds.md"].sha256 != before["kb/policies/refunds.md"].sha256
    for path in set(after) - {"kb/policies/refunds.md"}:
        assert after[path] == before[path]  # untouched: same hash, same indexed_at
    assert await library.search("kb", "du -xh sort tail", 5) == []
    texts = [h.passage.text for h in await library.search("kb", "refund purchase days", 10)]
    assert any("within 45 days of purchase" in text for text in texts)
    assert not any("within 30 days of purchase" in text for text in texts)


async def test_an_unreadable_file_is_skipped_and_named(library: Library, tmp_path: Path) -> None:
    (tmp_path / "kb/policies/broken.pdf").write_bytes(b"%PDF-1.4 not really")
    report = await library.index("kb")
    [skipped] = report.skipped
    assert "broken.pdf" in skipped and "not a readable PDF" in skipped
    assert len(report.added) == 8


async def test_a_search_cites_file_heading_and_lines(library: Library) -> None:
    await library.index("kb")
    [hit] = await library.search("kb", "promote the standby with patronictl", 1)
    assert hit.citation == (
        "kb/runbooks/database-failover.md#Database failover > Promote the replica (lines 12-14)"
    )
    assert hit.score > 0
    [page] = await library.search("kb", "hotel capital cities euros night", 1)
    assert page.citation == "kb/policies/travel.pdf (page 1)"
    [html_hit] = await library.search("kb", "greylisting password reset", 1)
    assert html_hit.citation.startswith(
        "kb/known-issues.html#Known issues > Password reset emails arrive late (lines "
    )
    assert "do not index me" not in html_hit.passage.text


async def test_query_syntax_is_searched_as_words(library: Library) -> None:
    await library.index("kb")
    for query in ['refund" OR', "NEAR(refund)", "-refund*", "refund:policy"]:
        hits = await library.search("kb", query, 3)  # no syntax error: the words are searched
        assert hits and all("refund" in h.passage.text.lower() for h in hits), query
    assert await library.search("kb", "&|! ( )", 3) == []
    assert await library.search("kb", "the of and", 3) == []


async def test_dropping_a_collection_removes_its_files_and_passages(
    library: Library, store: Store
) -> None:
    await library.index("kb")
    assert await store.knowledge.drop("kb") == 8
    assert await store.knowledge.files("kb") == []
    assert await store.knowledge.collections() == []
    assert await library.search("kb", "refund", 5) == []


async def test_the_store_says_how_it_compares_vectors(store: Store) -> None:
    note = await store.knowledge.vector_note()
    assert note.startswith("vectors are compared in the gateway (the plain fallback): ")
    assert ("sqlite" in note) == (store.dialect.name == "sqlite")


def test_markdown_is_split_along_headings_with_line_ranges() -> None:
    text = (
        "# Title\n\nIntro line.\n\n## Part\n\nFirst para\nstill first.\n\n```\ncode\n\nmore\n```\n"
    )
    blocks = markdown(text)
    assert [(b.headings, b.line_start, b.line_end) for b in blocks] == [
        (("Title",), 3, 3),
        (("Title", "Part"), 7, 8),
        (("Title", "Part"), 10, 14),
    ]
    assert blocks[2].text == "```\ncode\n\nmore\n```"


def test_html_text_is_extracted_without_tags_scripts_or_navigation() -> None:
    page = (
        "<html><head><script>var x = 1;</script></head><body><nav>Home</nav>"
        "<h1>Guide</h1><p>Hello <b>bold</b> &amp; world.</p><ul><li>one</li></ul></body></html>"
    )
    assert [(b.headings, b.text) for b in html(page)] == [
        (("Guide",), "Hello bold & world."),
        (("Guide",), "one"),
    ]


def test_a_long_paragraph_is_cut_with_overlap() -> None:
    sentence = "The quick brown fox jumps over the lazy dog. "
    [block] = markdown("# H\n\n" + sentence * 40)
    pieces = split([block], passage_chars=300, overlap_chars=60)
    assert len(pieces) > 5
    assert all(len(p.text) <= 300 for p in pieces)
    for before, after in itertools.pairwise(pieces):
        assert before.text[-40:].split()[-1] in after.text[:80]  # the overlap repeats it
    assert {p.heading for p in pieces} == {"H"}


def test_a_broken_pdf_or_unknown_format_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile, match="not a readable PDF"):
        load(tmp_path / "a.pdf", b"%PDF-1.4 garbage")
    with pytest.raises(UnreadableFile, match="not a known format"):
        load(tmp_path / "a.docx", b"PK")
    with pytest.raises(UnreadableFile, match="not UTF-8"):
        load(tmp_path / "a.md", b"\xff\xfe\xfa")


async def test_a_file_over_max_file_bytes_is_skipped_and_one_at_it_is_indexed(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/at.md").write_text("# At\n\n" + "a" * 194)  # 200 bytes
    (tmp_path / "docs/over.md").write_text("# Over\n\n" + "b" * 193)  # 201 bytes
    settings = collection(paths=["docs/*.md"], max_file_bytes=200)
    library = Library({"docs": settings}, store.knowledge, base_dir=tmp_path)
    report = await library.index("docs")
    await library.aclose()
    assert report.added == ["docs/at.md"]
    [skipped] = report.skipped
    assert "over.md: 201 bytes, over max_file_bytes" in skipped


def test_a_query_searches_at_most_32_distinct_words_without_stop_words() -> None:
    from gateway.store.knowledge import MAX_QUERY_TERMS, query_terms

    words = [f"word{i}" for i in range(40)]
    assert query_terms("The refund, the REFUND and how?") == ["refund"]
    assert query_terms(" ".join(words)) == words[:MAX_QUERY_TERMS] and MAX_QUERY_TERMS == 32


async def test_a_search_answer_is_capped_in_passages_and_characters(library: Library) -> None:
    from gateway.knowledge import answer
    from gateway.knowledge.library import MAX_K

    await library.index("kb")
    words = "refund policy days euros laptop disk database page security hotel customer"
    hits = await library.search("kb", words, 100)
    assert len(hits) == MAX_K == 20
    shared = answer(hits, max_chars=600)
    assert sum(len(h["text"]) for h in shared) <= 600
    for hit, given in zip(hits, shared, strict=True):
        if len(hit.passage.text) > 600 // 20:
            assert given["text"].endswith("…") and len(given["text"]) <= 30


async def test_the_gateway_reindexes_every_reindex_every_seconds(
    store: Store, tmp_path: Path
) -> None:
    import asyncio

    from gateway.knowledge.service import Indexing

    copy_corpus(tmp_path)
    clock = [1000.0]
    slept: list[float] = []
    second = asyncio.Event()

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds
        if len(slept) == 1:  # between the first and the second indexing, a file goes away
            (tmp_path / "kb/runbooks/disk-full.md").unlink()
        else:
            second.set()
            await asyncio.Event().wait()  # the test stops the task here

    indexing = Indexing(
        {"kb": collection(reindex_every=600)},
        {},
        tmp_path,
        sleep=fake_sleep,
        clock=lambda: clock[0],
    )
    indexing.start(store.knowledge)
    try:
        await asyncio.wait_for(second.wait(), 30)
    finally:
        await indexing.stop()
    assert slept == [600.0, 600.0]
    paths = {f.path for f in await store.knowledge.files("kb")}
    assert len(paths) == 7 and "kb/runbooks/disk-full.md" not in paths
