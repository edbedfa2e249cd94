"""Charts drawn on the server as inline SVG: readable without JavaScript, no library to vend.

Each function returns escaped markup for a template; every bar has a `<title>` (its tooltip)
and every chart a text legend, so the numbers are there for a screen reader and a test too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

from markupsafe import Markup, escape

from gateway.assistant.models import dollars as money

# Colours for series in order (sources, rules), and for run statuses by name.
PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#dc2626", "#4b5563")
STATUS_COLOURS = {
    "succeeded": "#16a34a",
    "failed": "#dc2626",
    "dead": "#7f1d1d",
    "awaiting_approval": "#d97706",
    "running": "#2563eb",
    "pending": "#6b7280",
}
WIDTH, HEIGHT, LEFT, BOTTOM = 720, 170, 64, 22
# The widest a bar gets: a week of days stays a set of bars, not a wall.
MAX_BAR = 48


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def stacked_bars(
    buckets: Sequence[datetime],
    series: Mapping[str, Sequence[float]],
    *,
    label: str,
    unit: str = "",
    time_format: str = "%H:%M",
) -> Markup:
    """One bar per bucket, stacked by series (e.g. events per minute by source)."""
    peak = max((sum(values) for values in zip(*series.values(), strict=True)), default=0)
    top = _nice(peak)
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - 8
    step = min(MAX_BAR + 1.0, plot_w / max(1, len(buckets)))
    parts = [_frame(label, top, unit)]
    for i, start in enumerate(buckets):
        y = float(HEIGHT - BOTTOM)
        for s, (name, values) in enumerate(series.items()):
            value = values[i]
            if not value:
                continue
            h = plot_h * value / top
            y -= h
            tip = f"{start.strftime(time_format)} {name}: {_number(value)}{unit}"
            parts.append(
                f'<rect x="{LEFT + i * step + 0.5:.1f}" y="{y:.1f}" '
                f'width="{max(1.0, step - 1):.1f}" height="{h:.1f}" fill="{colour(s)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    if buckets:
        last = len(buckets) - 1
        # The first label starts at its bar and the last ends at its own: none is cut off.
        labels = [(0, "start"), (last // 2, "middle"), (last, "end")]
        # A label per distinct bar: with one or two bars, no two labels print over each other.
        for i, anchor in {i: (i, anchor) for i, anchor in reversed(labels)}.values():
            x = LEFT + i * step + {"start": 0, "middle": step / 2, "end": step}[anchor]
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}" class="tick">'
                f"{escape(buckets[i].strftime(time_format))}</text>"
            )
    return _svg(label, parts)


def horizontal_bars(counts: Mapping[str, float], *, label: str) -> Markup:
    """One labelled bar per key (e.g. runs by status), longest scale to the widest bar."""
    top = max(counts.values(), default=0) or 1
    row, name_w = 24, 140
    height = max(1, len(counts)) * row + 8
    parts = []
    for i, (name, value) in enumerate(counts.items()):
        y = 4 + i * row
        w = (WIDTH - name_w - 60) * value / top
        fill = STATUS_COLOURS.get(name, colour(i))
        parts.append(
            f'<text x="{name_w - 6}" y="{y + 15}" text-anchor="end" class="tick">'
            f"{escape(name)}</text>"
            f'<rect x="{name_w}" y="{y + 2}" width="{max(1.0, w):.1f}" height="{row - 6}" '
            f'fill="{fill}"><title>{escape(name)}: {_number(value)}</title></rect>'
            f'<text x="{name_w + w + 6:.1f}" y="{y + 15}" class="tick">{_number(value)}</text>'
        )
    return _svg(label, parts, height)


def _frame(label: str, top: float, unit: str) -> str:
    base = HEIGHT - BOTTOM
    return (
        f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - 8}" y2="{base}" class="axis"/>'
        f'<line x1="{LEFT}" y1="8" x2="{WIDTH - 8}" y2="8" class="grid"/>'
        f'<text x="{LEFT - 4}" y="14" text-anchor="end" class="tick">{_number(top)}{unit}</text>'
        f'<text x="{LEFT - 4}" y="{base}" text-anchor="end" class="tick">0</text>'
    )


def _svg(label: str, parts: list[str], height: int = HEIGHT) -> Markup:
    return Markup(  # noqa: S704 (every text in it went through escape)
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMinYMin meet">'
        + "".join(parts)
        + "</svg>"
    )


def _nice(peak: float) -> float:
    """The axis top: 1, 2 or 5 times a power of ten, at least `peak`."""
    if peak <= 0:
        return 1
    power = 10.0 ** math.floor(math.log10(peak))
    return next(float(m * power) for m in (1, 2, 5, 10) if m * power >= peak)


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return money(value).removeprefix("$")
