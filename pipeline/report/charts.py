"""The report's chart types, drawn on :class:`pipeline.report.svg.Canvas`.

Box plots per panel, stacked columns, horizontal bars, scatter panels and a histogram:
the few plain charts the report needs, each returned as one inline SVG string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

from pipeline.report.svg import (
    GRID,
    PALETTE,
    WIDTH,
    Canvas,
    Linear,
    color,
    fmt,
    nice_ticks,
    span_of,
)


@dataclass(frozen=True)
class Box:
    """One distribution: minimum, quartiles, median, 95th percentile, maximum."""

    label: str
    n: int
    minimum: float
    p25: float
    p50: float
    p75: float
    p95: float
    maximum: float


def box_panels(fig_id: str, title: str, panels: Sequence[tuple[str, Sequence[Box]]]) -> str:
    """One small box plot per panel (e.g. per stage), one box per group (e.g. per backend)."""
    labels = sorted({b.label for _, boxes in panels for b in boxes})
    colors = {label: color(i) for i, label in enumerate(labels)}
    width, height, top, bottom = WIDTH, 260, 20, 190
    canvas = Canvas(width, height)
    panel_w = (width - 22) / max(len(panels), 1)
    for i, (name, boxes) in enumerate(panels):
        left = 22 + i * panel_w + 34
        lo, hi = span_of([b.maximum for b in boxes] + [b.minimum for b in boxes], zero=True)
        scale = Linear(lo, hi, bottom, top)
        for tick in nice_ticks(lo, hi, 4):
            if lo <= tick <= hi:
                canvas.line(left, scale(tick), left + panel_w - 40, scale(tick), GRID)
                canvas.text(left - 3, scale(tick) + 4, fmt(tick), "end", "small")
        canvas.line(left, top, left, bottom)
        canvas.text(left + (panel_w - 40) / 2, bottom + 16, name, "middle")
        slot = (panel_w - 42) / max(len(boxes), 1)
        for j, box in enumerate(boxes):
            cx = left + 2 + slot * (j + 0.5)
            half = min(slot * 0.3, 14)
            tip = (
                f"{name} on {box.label}: n={box.n}, min {fmt(box.minimum)} s, p50 "
                f"{fmt(box.p50)} s, p95 {fmt(box.p95)} s, max {fmt(box.maximum)} s"
            )
            fill = colors[box.label]
            canvas.line(cx, scale(box.minimum), cx, scale(box.maximum), fill)
            canvas.rect(
                cx - half, scale(box.p75), 2 * half, scale(box.p25) - scale(box.p75), fill, tip
            )
            canvas.line(cx - half, scale(box.p50), cx + half, scale(box.p50), "#111827", 2)
            y95 = scale(box.p95)
            canvas.parts.append(
                f'<path d="M{cx:.1f} {y95 - 4:.1f} l4 4 l-4 4 l-4 -4 z" fill="#111827">'
                f"<title>{escape(tip)}</title></path>"
            )
    canvas.text(12, (top + bottom) / 2, "seconds", "middle", "small", rotate=True)
    canvas.legend(50, bottom + 40, [(label, colors[label]) for label in labels])
    canvas.text(50, bottom + 62, "box: p25-p75, bar: p50, diamond: p95, line: min-max", cls="small")
    return canvas.svg(fig_id, title)


def stacked_columns(
    fig_id: str,
    title: str,
    columns: Sequence[tuple[str, Mapping[str, float]]],
    categories: Sequence[str],
    y_label: str,
) -> str:
    """One column per x value (e.g. per run), stacked by category."""
    width, top, bottom = WIDTH, 20, 200
    legend_rows = 1 + sum(len(c) * 7 + 28 for c in categories) // (width - 60)
    canvas = Canvas(width, bottom + 50 + 16 * legend_rows)
    totals = [sum(values.values()) for _, values in columns]
    lo, hi = span_of(totals, zero=True)
    scale = Linear(lo, hi, bottom, top)
    canvas.y_axis(scale, 50, width - 10, y_label)
    slot = (width - 70) / max(len(columns), 1)
    bar_w = max(min(slot * 0.8, 56), 1)
    colors = {c: color(i) for i, c in enumerate(categories)}
    for i, (label, values) in enumerate(columns):
        x = 55 + i * slot
        base = 0.0
        for category in categories:
            value = values.get(category, 0.0)
            if value:
                y0, y1 = scale(base), scale(base + value)
                tip = f"{label}: {category}: {fmt(value)}"
                canvas.rect(x, y1, bar_w, y0 - y1, colors[category], tip)
                base += value
        if len(columns) <= 12:
            canvas.text(x + bar_w / 2, bottom + 14, label[-8:], "middle", "small")
    canvas.line(50, bottom, width - 10, bottom)
    canvas.legend(50, bottom + 36, [(c, colors[c]) for c in categories])
    return canvas.svg(fig_id, title)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    fill: str = PALETTE[0]
    tip: str = ""


def hbars(
    fig_id: str,
    title: str,
    bars: Sequence[Bar],
    x_label: str,
    limit: float | None = None,
    show: Callable[[float], str] = fmt,
) -> str:
    """Horizontal bars, one per label, in the order given (``limit``: a fixed axis end;
    ``show`` writes the values and ticks, e.g. as money)."""
    label_w = min(260, 20 + 6.5 * max((len(b.label) for b in bars), default=4))
    row, top = 22, 10
    bottom = top + row * len(bars)
    canvas = Canvas(WIDTH, int(bottom + 44))
    lo, hi = span_of([b.value for b in bars] + ([limit] if limit is not None else []), zero=True)
    scale = Linear(lo, hi, label_w, WIDTH - 64)
    for tick in nice_ticks(lo, hi):
        if lo <= tick <= hi:
            canvas.line(scale(tick), top, scale(tick), bottom, GRID)
    for i, bar in enumerate(bars):
        y = top + i * row
        shown = bar.label if len(bar.label) <= 40 else bar.label[:39] + "…"
        canvas.text(label_w - 6, y + row * 0.65, shown, "end", "small")
        tip = bar.tip or f"{bar.label}: {show(bar.value)}"
        x0, x1 = sorted((scale(0), scale(bar.value)))
        canvas.rect(x0, y + 3, x1 - x0, row - 6, bar.fill, tip)
        canvas.text(x1 + 3, y + row * 0.65, show(bar.value), cls="small")
    canvas.x_axis(scale, bottom, x_label, show)
    return canvas.svg(fig_id, title)


@dataclass(frozen=True)
class Series:
    label: str
    fill: str
    points: Sequence[tuple[float, float, str]]  # x, y, tooltip


@dataclass(frozen=True)
class Panel:
    title: str
    x_label: str
    y_label: str
    series: Sequence[Series]
    hline: float | None = None  # e.g. a ratio of 1
    diagonal: bool = False  # y = x, e.g. stored against replayed
    y_zero: bool = False  # the y axis starts at zero: no value is below it (e.g. a gap)


DENSE = 200  # more points than this in a figure: smaller, fainter marks, so overlaps show


def scatter_panels(fig_id: str, title: str, panels: Sequence[Panel]) -> str:
    """Scatter plots side by side, sharing a legend."""
    width, top, bottom = WIDTH, 24, 200
    canvas = Canvas(width, bottom + 66)
    panel_w = (width - 10) / max(len(panels), 1)
    points = sum(len(s.points) for panel in panels for s in panel.series)
    mark = (2.5, 0.55) if points > DENSE else (4.0, 0.85)  # radius, opacity
    for i, panel in enumerate(panels):
        left = 55 + i * panel_w
        box = _Box(left, left + panel_w - 65, top, bottom)
        xscale, yscale = _scales(panel, box)
        _frame(canvas, panel, box, xscale, yscale)
        for series in panel.series:
            for x, y, tip in series.points:
                canvas.circle(xscale(x), yscale(y), series.fill, tip, *mark)
    seen: dict[str, str] = {}
    for panel in panels:
        for series in panel.series:
            seen.setdefault(series.label, series.fill)
    canvas.legend(55, bottom + 54, list(seen.items()))
    return canvas.svg(fig_id, title)


@dataclass(frozen=True)
class _Box:
    """Where a panel's plot area sits on the canvas."""

    left: float
    right: float
    top: float
    bottom: float


def _scales(panel: Panel, box: _Box) -> tuple[Linear, Linear]:
    """Axes that hold every point, the reference line, and (for a diagonal) both ranges."""
    xs = [x for s in panel.series for x, _, _ in s.points]
    ys = [y for s in panel.series for _, y, _ in s.points]
    if panel.hline is not None:
        ys.append(panel.hline)
    if panel.diagonal:
        xs = ys = xs + ys
    xscale = Linear(*span_of(xs, pad=0.06), box.left, box.right)
    y_lo, y_hi = span_of(ys, pad=0.08)
    yscale = Linear(0.0 if panel.y_zero else y_lo, y_hi, box.bottom, box.top)
    return xscale, yscale


def _frame(canvas: Canvas, panel: Panel, box: _Box, xscale: Linear, yscale: Linear) -> None:
    """A panel's grid, axes, labels, title and reference lines, under its points."""
    left, right, top, bottom = box.left, box.right, box.top, box.bottom
    for tick in nice_ticks(yscale.lo, yscale.hi, 4):
        if yscale.lo <= tick <= yscale.hi:
            canvas.line(left, yscale(tick), right, yscale(tick), GRID)
            canvas.text(left - 4, yscale(tick) + 4, fmt(tick), "end", "small")
    canvas.line(left, top, left, bottom)
    canvas.text(left - 44, (top + bottom) / 2, panel.y_label, "middle", "small", rotate=True)
    canvas.text((left + right) / 2, 14, panel.title, "middle")
    canvas.x_axis(Linear(xscale.lo, xscale.hi, left, right), bottom, panel.x_label)
    if panel.hline is not None:
        y = yscale(panel.hline)
        canvas.line(left, y, right, y, "#9ca3af", 1)
    if panel.diagonal:
        lo, hi = max(xscale.lo, yscale.lo), min(xscale.hi, yscale.hi)
        canvas.line(xscale(lo), yscale(lo), xscale(hi), yscale(hi), "#9ca3af", 1)


def histogram(
    fig_id: str, title: str, values: Sequence[float], x_label: str, bins: int = 20
) -> str:
    """Counts of ``values`` in equal-width bins."""
    lo, hi = min(values), max(values)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / bins
    counts = [0] * bins
    for value in values:
        counts[min(int((value - lo) / step), bins - 1)] += 1
    top, bottom = 10, 180
    canvas = Canvas(WIDTH, bottom + 40)
    xscale = Linear(lo, hi, 50, WIDTH - 20)
    yscale = Linear(*span_of([float(c) for c in counts], zero=True), bottom, top)
    canvas.y_axis(yscale, 50, WIDTH - 20, "problems")
    for i, count in enumerate(counts):
        a, b = lo + i * step, lo + (i + 1) * step
        tip = f"{fmt(a)}-{fmt(b)}: {count}"
        canvas.rect(
            xscale(a) + 1,
            yscale(count),
            xscale(b) - xscale(a) - 2,
            bottom - yscale(count),
            PALETTE[0],
            tip,
        )
    canvas.x_axis(xscale, bottom, x_label)
    return canvas.svg(fig_id, title)
