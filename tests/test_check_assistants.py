"""`gateway check` also checks what an assistant rule needs from the config."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gateway import cli


def test_bad_profile_unknown_model_and_bad_policy_are_each_reported(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "gateway.yaml").write_text(
        "store: sqlite:///x.db\nmodels:\n  default: {api: respones, model: m}\n"
    )
    (tmp_path / "rules" / "a.yaml").write_text(
        "- name: a\n"
        "  on: {source: shop}\n"
        "  assistant:\n"
        "    model: nosuch\n"
        "    prompt: hi\n"
        "    tools: [email.send]\n"
        "    policy: {email.send: {too: x}}\n"
        "- name: b\n"
        "  on: {source: shop}\n"
        "  assistant:\n"
        "    prompt: hi\n"
        "    tools: [email.send]\n"
        '    policy: {email.send: {approve: "yes"}}\n'
    )

    result = CliRunner().invoke(cli.app, ["check", "--config", str(tmp_path / "gateway.yaml")])

    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "models.default.api" in output
    assert "a.yaml:4: rule a: assistant.model: no profile named 'nosuch'" in output
    assert "a.yaml:7: rule a: assistant.policy.email.send: policy for email.send" in output
    assert "email.send has no such argument" in output
    assert "a.yaml:13: rule b: assistant.policy.email.send: approve must be true or false" in output
