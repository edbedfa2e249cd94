"""`gateway knowledge index|search|list|drop` and what `gateway check` says of collections."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from typer.testing import CliRunner

from gateway import cli
from tests.knowledge import PATTERNS, copy_corpus

runner = CliRunner()


def write_config(tmp_path: Path, **knowledge: object) -> Path:
    (tmp_path / "rules").mkdir(exist_ok=True)
    path = tmp_path / "gateway.yaml"
    document = {
        "store": "sqlite:///gateway.db",
        "knowledge": knowledge
        or {"kb": {"paths": PATTERNS, "passage_chars": 500, "overlap_chars": 50}},
    }
    path.write_text(yaml.safe_dump(document))
    return path


def gateway(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.output


def test_index_then_search_list_and_drop(tmp_path: Path) -> None:
    copy_corpus(tmp_path)
    config = str(write_config(tmp_path))

    code, out = gateway("knowledge", "index", "-c", config)
    assert code == 0, out
    assert "kb: 8 added, 0 updated, 0 removed, 0 unchanged; 25 passages" in out
    code, out = gateway("knowledge", "index", "kb", "-c", config)
    assert "kb: 0 added, 0 updated, 0 removed, 8 unchanged; 0 passages" in out

    question = "who approves big refunds"
    code, out = gateway("knowledge", "search", "kb", question, "--json", "-c", config)
    assert code == 0, out
    hits = json.loads(out)
    assert hits[0]["citation"].startswith("kb/policies/refunds.md#Refund policy > How refunds")
    assert len(hits) == 5

    code, out = gateway("knowledge", "list", "-c", config)
    assert code == 0 and "kb" in out and "25" in out and "lexical" in out
    code, out = gateway("knowledge", "list", "kb", "-c", config)
    assert "kb/policies/travel.pdf" in out

    code, out = gateway("knowledge", "drop", "kb", "-c", config)
    assert code == 0 and "kb: 8 file(s) removed" in out
    code, out = gateway("knowledge", "search", "kb", "refund", "-c", config)
    assert code == 0 and "no passage matched" in out


def test_searching_an_unknown_collection_fails_naming_the_known_ones(tmp_path: Path) -> None:
    copy_corpus(tmp_path)
    config = str(write_config(tmp_path))
    gateway("knowledge", "index", "-c", config)  # the one command that migrates a new database
    code, out = gateway("knowledge", "search", "runbook", "disk", "-c", config)
    assert code == 1
    assert "no knowledge collection named 'runbook' (known: kb)" in out


def test_check_warns_of_a_pattern_that_matches_nothing(tmp_path: Path) -> None:
    copy_corpus(tmp_path)
    config = str(
        write_config(tmp_path, kb={"paths": PATTERNS}, drafts={"paths": ["drafts/**/*.md"]})
    )
    code, out = gateway("check", "-c", config)
    assert code == 0, out
    assert "warning: knowledge.drafts: 'drafts/**/*.md' matches no file" in out
    assert "knowledge.kb" not in out


def test_check_refuses_an_embeddings_profile_that_does_not_exist(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, kb={"paths": PATTERNS, "embeddings": "embedder"}))
    code, out = gateway("check", "-c", config)
    assert code == 1
    assert "knowledge.kb.embeddings: no profile named 'embedder' under `models:`" in out


def test_check_refuses_bad_collection_settings(tmp_path: Path) -> None:
    config = str(
        write_config(
            tmp_path,
            kb={"paths": [], "passage_chars": 100, "overlap": 3},
        )
    )
    code, out = gateway("check", "-c", config)
    assert code == 1
    assert "knowledge.kb.paths" in out
    assert "knowledge.kb.passage_chars" in out
    assert "knowledge.kb.overlap" in out


def test_check_refuses_a_collection_name_that_is_not_a_word(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, **{"run books": {"paths": PATTERNS}}))
    code, out = gateway("check", "-c", config)
    assert code == 1
    assert "collection name 'run books' may only use letters" in out


def test_a_context_rule_must_name_a_configured_collection(tmp_path: Path) -> None:
    config = write_config(tmp_path, kb={"paths": PATTERNS})
    (tmp_path / "rules" / "r.yaml").write_text(
        "- name: r\n  on: {source: shop}\n  assistant:\n    prompt: hi\n"
        "    context: {knowledge: runbooks, query: '{{ payload.x }}'}\n"
    )
    text = config.read_text() + "models: {default: {model: gpt-4.1-mini}}\n"
    text += "sources: {shop: {provider: shopify, secret: s}}\n"
    config.write_text(text)
    code, out = gateway("check", "-c", str(config))
    assert code == 1
    assert "no collection named 'runbooks' under `knowledge:` (defined: kb)" in out


def test_file_search_must_name_a_hosted_collection_on_a_responses_profile(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path,
        kb={"paths": PATTERNS},
        policies={"paths": PATTERNS, "hosted": True, "profile": "local"},
    )
    (tmp_path / "rules" / "r.yaml").write_text(
        "- name: r\n  on: {source: shop}\n  assistant:\n    prompt: hi\n    file_search: [kb]\n"
    )
    text = config.read_text() + "models: {default: {model: gpt-4.1-mini},"
    text += " local: {api: chat, model: qwen3, base_url: 'http://127.0.0.1:1/v1'}}\n"
    text += "sources: {shop: {provider: shopify, secret: s}}\n"
    config.write_text(text)
    code, out = gateway("check", "-c", str(config))
    assert code == 1
    assert "knowledge.policies.profile: hosted: profile 'local' is not on the Responses API" in out
    config.write_text(text.replace("profile: local", "profile: default"))
    code, out = gateway("check", "-c", str(config))
    assert code == 1
    assert "'kb' is not a hosted collection under `knowledge:`" in out


def test_indexing_with_embeddings_counts_tokens_and_says_how_vectors_are_compared(
    tmp_path: Path,
) -> None:
    from gateway.testing.fake_embeddings import EmbeddingServer

    copy_corpus(tmp_path)
    with EmbeddingServer() as server:
        config = write_config(tmp_path, kb={"paths": PATTERNS, "embeddings": "embed"})
        profile = json.dumps(server.block())
        config.write_text(config.read_text() + f"models: {{embed: {profile}}}\n")
        code, out = gateway("knowledge", "index", "-c", str(config))
        code2, out2 = gateway("knowledge", "list", "-c", str(config))
    assert code == 0, out
    assert "note: vectors are compared in the gateway (the plain fallback): " in out
    spent = re.search(r"; (\d+) embedding tokens \(\$0\.0000\)", out)  # a local model: free
    assert spent is not None and int(spent.group(1)) > 0
    assert sum(len(batch) for batch in server.batches) == 24  # every passage, embedded once
    assert code2 == 0
    assert re.search(r"kb\s+│\s+8\s+│\s+24\s+│\s+24\s+│", out2)  # files, passages, embedded


def test_the_tool_catalogue_names_the_configured_collections(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, kb={"paths": PATTERNS}, drafts={"paths": ["d/*"]}))
    code, out = gateway("tools", "--json", "-c", config)
    assert code == 0, out
    [tool] = [t for t in json.loads(out) if t["tool"] == "knowledge.search"]
    assert tool["description"].endswith("Collections: drafts, kb.")
    assert tool["side_effects"] is False
