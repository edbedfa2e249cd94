"""Tools: the schema the model sees comes from the signature, and arguments are checked by it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.errors import ConfigError
from gateway.tools import (
    FAMILIES,
    TOOLS,
    Family,
    FamilySettings,
    Toolbox,
    ToolContext,
    ToolError,
)


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


@pytest.fixture
def probe() -> Iterator[list[str]]:
    """A family `probe` whose client logs its life: "open", "close" (and a failed "open!")."""
    life: list[str] = []

    @asynccontextmanager
    async def connect(settings: ProbeSettings) -> AsyncIterator[list[str]]:
        if settings.fail_first and "open!" not in life:
            life.append("open!")
            raise ToolError("the remote is not up yet")
        life.append("open")
        try:
            yield life
        finally:
            life.append("close")

    family = Family("probe", ProbeSettings, client=connect)

    @family.tool("probe.use", side_effects=False)
    async def use(context: ToolContext[ProbeSettings, list[str]]) -> int:
        """Use the family's client; returns how many times it was opened."""
        return (await context.client()).count("open")

    try:
        yield life
    finally:
        TOOLS.forget("probe.use")


class ProbeSettings(FamilySettings):
    fail_first: bool = False


async def test_a_familys_client_is_opened_once_and_closed_with_the_toolbox(
    probe: list[str],
) -> None:
    async with Toolbox() as toolbox:
        assert probe == [], "nothing is opened before a call needs it"
        first = await toolbox.call("probe.use", {}, key="a")
        second = await toolbox.call("probe.use", {}, key="b")
        assert (first, second) == (1, 1)
        assert probe == ["open"]

    assert probe == ["open", "close"]


async def test_a_client_that_fails_to_open_fails_the_call_and_the_next_call_opens_it(
    probe: list[str],
) -> None:
    async with Toolbox({"probe": {"fail_first": True}}) as toolbox:
        with pytest.raises(ToolError, match="not up yet"):
            await toolbox.call("probe.use", {}, key="a")
        assert await toolbox.call("probe.use", {}, key="b") == 1

    assert probe == ["open!", "open", "close"]


def test_a_toolbox_refuses_an_invalid_block_before_any_call(probe: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"handlers\.probe: fail_first"):
        Toolbox({"probe": {"fail_first": "perhaps"}})


def test_a_tool_is_named_after_its_family() -> None:
    family = Family("probe2")
    try:
        with pytest.raises(ValueError, match="not named probe2"):
            family.tool("other.thing")
    finally:
        del FAMILIES["probe2"]
