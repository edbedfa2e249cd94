"""The dashboard's knowledge page: collections with files, passages and last index time, and
a search box that answers with citations."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import pytest

from tests.fixtures import requires_fixtures
from tests.knowledge import PATTERNS, copy_corpus
from tests.live import LiveGateway, live_gateway

pytestmark = [requires_fixtures, pytest.mark.usefixtures("recording")]

TOKEN = "knowledge-dashboard-token-of-32-chars"


def logged_in(gw: LiveGateway) -> httpx2.Client:
    client = httpx2.Client(base_url=gw.url.replace("127.0.0.1", "localhost"), timeout=30)
    answer = client.post("/ui/login", data={"token": TOKEN, "next": "/ui/knowledge"})
    assert answer.status_code == 303, answer.text
    # The session cookie is Secure; this test speaks plain HTTP on loopback, so carry it.
    for name, value in answer.cookies.items():
        client.headers["cookie"] = f"{name}={value}"
    return client


def test_the_knowledge_page_lists_collections_and_searches_one(tmp_path: Path) -> None:
    copy_corpus(tmp_path)
    with live_gateway(
        tmp_path,
        "[]",
        admin_token=TOKEN,
        knowledge={
            "kb": {"paths": PATTERNS, "passage_chars": 500, "overlap_chars": 50},
            "drafts": {"paths": ["drafts/*.md"]},
        },
    ) as gw:
        gw.wait_for(lambda: gw.query(lambda s: s.knowledge.collections()) or None)
        client = logged_in(gw)
        page = client.get("/ui/knowledge", params={"collection": "kb"})
        found = client.get("/ui/knowledge", params={"collection": "kb", "q": "greylisting"})
        nothing = client.get("/ui/knowledge", params={"collection": "drafts", "q": "x"})
        client.close()

    assert page.status_code == 200
    row = re.search(r'<tr data-collection="kb".*?</tr>', page.text, re.S)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(0), re.S)
    assert cells[1:4] == ["lexical", "8", "25"]
    assert "kb/policies/travel.pdf" in page.text and "never" in page.text  # drafts: never
    assert found.status_code == 200
    assert "kb/known-issues.html#Known issues &gt; Password reset emails arrive late" in found.text
    assert "No passage matched." in nothing.text
    assert "Not indexed" in nothing.text
