"""The knowledge corpus of the tests (tests/knowledge_corpus), copied where a test may change
it, with its PDF generated from its source text; and its labelled questions."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from gateway.knowledge import Collection
from gateway.testing.pdf import text_pdf

CORPUS = Path(__file__).parent / "knowledge_corpus"
PATTERNS = ["kb/runbooks/*.md", "kb/policies/*", "kb/*.html"]


@dataclass(frozen=True)
class Question:
    q: str
    file: str
    phrase: str


def copy_corpus(base_dir: Path) -> Path:
    """The corpus under `base_dir/kb`, with policies/travel.pdf written from its source."""
    target = base_dir / "kb"
    shutil.copytree(CORPUS, target, ignore=shutil.ignore_patterns("questions.yaml"))
    source = target / "policies" / "travel.pdf.source"
    (target / "policies" / "travel.pdf").write_bytes(text_pdf(source.read_text()))
    source.unlink()
    return target


def collection(**settings: object) -> Collection:
    return Collection.model_validate(
        {"paths": PATTERNS, "passage_chars": 500, "overlap_chars": 50, **settings}
    )


def questions() -> list[Question]:
    return [Question(**entry) for entry in yaml.safe_load((CORPUS / "questions.yaml").read_text())]
