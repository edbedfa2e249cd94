"""`report.csv` and `report.chart`: turn rows into a CSV file or a PNG chart inside the run.

The files land in the run's files (name → bytes), where `email.send` attaches them: a local
alternative to a hosted code interpreter, on every model backend.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
from typing import Annotated, Any, Literal

from pydantic import Field

from gateway.tools import Family, NoSettings, PermanentToolError, ToolContext

# The chart's size in pixels: readable in a mail client, small enough to attach freely.
CHART_WIDTH = 800
CHART_HEIGHT = 450
CHART_DPI = 100
PREVIEW_LINES = 5
MAX_CSV_BYTES = 10 * 1024 * 1024

Cell = str | int | float | bool | None


family = Family("report")
Context = ToolContext[NoSettings, None]


# A CSV file's name in the run's files (`report.csv`, `sql.query`'s `save_as`).
CSV_NAME = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*\.csv$"


@family.tool("report.csv", side_effects=False, makes_files=True)
async def write_csv(
    context: Context,
    name: Annotated[str, Field(pattern=CSV_NAME, description="File name, e.g. sales.csv")],
    columns: Annotated[list[str], Field(min_length=1, description="Header row")],
    rows: Annotated[list[list[Cell]], Field(description="Data rows, one value per column")],
) -> dict[str, Any]:
    """Write rows as a CSV file (UTF-8, header first) that a later email.send can attach.

    Returns the file name, its size in bytes and its first lines.
    """
    content = csv_bytes(columns, rows)
    context.files[name] = content
    preview = content.decode("utf-8").splitlines()[: PREVIEW_LINES + 1]
    return {"name": name, "bytes": len(content), "rows": len(rows), "preview": preview}


def csv_bytes(columns: list[str], rows: list[list[Cell]]) -> bytes:
    """Rows as a CSV file: UTF-8, header first, CRLF, None as empty; PermanentToolError for a
    row of the wrong length or a file over MAX_CSV_BYTES. `sql.query`'s `save_as` too."""
    for number, row in enumerate(rows, start=1):
        if len(row) != len(columns):
            raise PermanentToolError(
                f"row {number} has {len(row)} values for {len(columns)} columns"
            )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(["" if value is None else value for value in row] for row in rows)
    content = buffer.getvalue().encode("utf-8")
    if len(content) > MAX_CSV_BYTES:
        raise PermanentToolError(f"the CSV would be {len(content)} bytes: over {MAX_CSV_BYTES}")
    return content


@family.tool("report.chart", side_effects=False, makes_files=True)
async def chart(
    context: Context,
    name: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*\.png$", description="File name, e.g. sales.png"
        ),
    ],
    title: Annotated[str, Field(description="Chart title")],
    labels: Annotated[list[str], Field(min_length=1, description="Category or x-axis labels")],
    values: Annotated[list[float], Field(min_length=1, description="One value per label")],
    kind: Annotated[Literal["bar", "line"], Field(description="bar or line")] = "bar",
) -> dict[str, Any]:
    """Draw a small bar or line chart as a PNG file that a later email.send can attach."""
    if len(labels) != len(values):
        raise PermanentToolError(f"{len(labels)} labels for {len(values)} values: give one each")
    if not all(math.isfinite(v) for v in values):
        raise PermanentToolError("values must be finite numbers")
    # Rendering is CPU work in a blocking library: off the event loop.
    content = await asyncio.to_thread(render_chart, title, labels, values, kind)
    context.files[name] = content
    return {"name": name, "bytes": len(content), "width": CHART_WIDTH, "height": CHART_HEIGHT}


def render_chart(title: str, labels: list[str], values: list[float], kind: str) -> bytes:
    """The PNG bytes of the chart, CHART_WIDTH by CHART_HEIGHT pixels."""
    # The object API with the Agg canvas: no pyplot global state, safe in worker threads.
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # an optional extra: the default image leaves it out
        raise PermanentToolError(
            "report.chart needs matplotlib: install webhook-gateway[charts]"
        ) from None

    figure = Figure(figsize=(CHART_WIDTH / CHART_DPI, CHART_HEIGHT / CHART_DPI), dpi=CHART_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = list(range(len(labels)))
    if kind == "line":
        axes.plot(positions, values, marker="o")
    else:
        axes.bar(positions, values)
    axes.set_xticks(positions, labels, rotation=30 if len(labels) > 6 else 0, ha="right")
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    output = io.BytesIO()
    figure.savefig(output, format="png", dpi=CHART_DPI)
    return output.getvalue()
