"""`report.csv` and `report.chart`: files in the run that `email.send` can attach."""

from __future__ import annotations

import csv
import io
import struct
import sys
from typing import Any

import pytest

from gateway.tools import TOOLS, PermanentToolError
from handlers.report import CHART_HEIGHT, CHART_WIDTH
from tests.calls import call_tool

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def call(tool_name: str, files: dict[str, bytes], **arguments: Any) -> dict[str, Any]:
    """The tool's result; the files it makes land in `files`, the run's files."""
    arguments = TOOLS[tool_name].validate(arguments)
    result: dict[str, Any] = await call_tool(tool_name, {}, arguments, files=files)
    return result


def png_size(content: bytes) -> tuple[int, int]:
    # The IHDR chunk comes first: width and height as big-endian 32-bit integers.
    assert content[12:16] == b"IHDR"
    width, height = struct.unpack(">II", content[16:24])
    return width, height


async def test_csv_is_written_into_the_run_files_and_parses_back() -> None:
    files: dict[str, bytes] = {}
    rows = [["2026-01-05", 3, 120.5], ["2026-01-06", 0, None], ['Café, "Nord"', 1, 2.0]]

    result = await call(
        "report.csv", files, name="sales.csv", columns=["day", "orders", "revenue"], rows=rows
    )

    content = files["sales.csv"]
    parsed = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    assert parsed == [
        ["day", "orders", "revenue"],
        ["2026-01-05", "3", "120.5"],
        ["2026-01-06", "0", ""],
        ['Café, "Nord"', "1", "2.0"],
    ]
    assert result["name"] == "sales.csv"
    assert result["bytes"] == len(content)
    assert result["preview"][0] == "day,orders,revenue"
    assert TOOLS["report.csv"].side_effects is False


async def test_csv_refuses_a_row_of_the_wrong_width() -> None:
    with pytest.raises(PermanentToolError, match="row 2 has 1 values for 2 columns"):
        await call("report.csv", {}, name="a.csv", columns=["a", "b"], rows=[[1, 2], [3]])


def test_file_names_are_plain_names_with_the_right_extension() -> None:
    from pydantic import ValidationError

    for name in ("../etc/passwd.csv", "sales.txt", "/tmp/x.csv", ".hidden.csv"):
        with pytest.raises(ValidationError):
            TOOLS["report.csv"].validate({"name": name, "columns": ["a"], "rows": []})


@pytest.mark.parametrize("kind", ["bar", "line"])
async def test_chart_is_a_png_of_the_documented_size(kind: str) -> None:
    files: dict[str, bytes] = {}

    result = await call(
        "report.chart",
        files,
        name="sales.png",
        title="Revenue per day",
        labels=["Mon", "Tue", "Wed"],
        values=[120.5, 80, 200],
        kind=kind,
    )

    content = files["sales.png"]
    assert content.startswith(PNG_MAGIC)
    assert png_size(content) == (CHART_WIDTH, CHART_HEIGHT) == (800, 450)
    assert result == {"name": "sales.png", "bytes": len(content), "width": 800, "height": 450}
    assert TOOLS["report.chart"].side_effects is False


async def test_chart_needs_one_value_per_label() -> None:
    with pytest.raises(PermanentToolError, match="2 labels for 1 values"):
        await call(
            "report.chart",
            {},
            name="c.png",
            title="t",
            labels=["a", "b"],
            values=[1],
        )


async def test_chart_without_matplotlib_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # matplotlib is the optional `charts` extra: the default image leaves it out.
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)

    with pytest.raises(PermanentToolError, match=r"install webhook-gateway\[charts\]"):
        await call(
            "report.chart",
            {},
            name="c.png",
            title="t",
            labels=["a"],
            values=[1],
        )
