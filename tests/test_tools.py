"""Tools: the schema the model sees comes from the signature, and arguments are checked by it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.tools import load_builtin

TOOLS = load_builtin()


def objects(schema: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            found.append(schema)
        for value in schema.values():
            found += objects(value)
    elif isinstance(schema, list):
        for value in schema:
            found += objects(value)
    return found


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_every_tool_has_a_description_and_a_closed_argument_object(name: str) -> None:
    definition = TOOLS[name].definition()

    assert definition["name"] == name.replace(".", "__")
    assert len(definition["description"]) > 20
    top = definition["parameters"]
    assert top["additionalProperties"] is False
    assert top["required"] == list(top["properties"])
    if definition["strict"]:
        assert all(o.get("additionalProperties") is False for o in objects(top))


def test_free_form_maps_make_a_tool_non_strict_rather_than_wrong() -> None:
    assert TOOLS["http.request"].definition()["strict"] is False
    assert TOOLS["jira.create_issue"].definition()["strict"] is True


def test_null_for_an_optional_argument_means_its_default() -> None:
    checked = TOOLS["jira.create_issue"].validate(
        {"project": "OPS", "summary": "x", "description": None, "issue_type": None, "labels": None}
    )

    assert checked["issue_type"] == "Task"


def test_wrong_types_and_unknown_arguments_are_refused() -> None:
    with pytest.raises(ValidationError):
        TOOLS["jira.create_issue"].validate({"project": "OPS", "summary": ["not", "text"]})
    with pytest.raises(ValidationError):
        TOOLS["jira.create_issue"].validate({"project": "OPS", "summary": "x", "priority": 1})


def test_gateway_tools_lists_the_catalogue_with_schemas() -> None:
    import json

    from typer.testing import CliRunner

    from gateway import cli

    result = CliRunner().invoke(cli.app, ["tools", "--json"])

    assert result.exit_code == 0, result.output
    listed = {entry["tool"]: entry for entry in json.loads(result.output)}
    assert set(listed) == set(TOOLS)
    assert listed["jira.create_issue"]["recoverable"] is True
    assert listed["sql.query"]["side_effects"] is False
    assert "project" in listed["jira.create_issue"]["parameters"]["properties"]
