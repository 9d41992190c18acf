"""SVG drawing primitives (scales, ticks, a canvas), so the report opens offline.

Matplotlib is not a dependency of the pipeline, and the charts the report needs are few
and plain (:mod:`pipeline.report.charts`). Each chart is a string of inline SVG with a ``<title>`` for screen readers and a tooltip
(``<title>`` inside each mark) for every bar, box and point; no script, no font, no link.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = (
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#c44e52",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
    "#64b5cd",
)
WIDTH = 620
AXIS = "#6b7280"
GRID = "#e5e7eb"


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def fmt(value: float) -> str:
    """Three significant digits, no exponent for everyday magnitudes (1,500, not 1.5e+03)."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        return f"{value:.2e}"
    if abs(value) >= 1e3:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering ``[lo, hi]``.

    A range too thin to tick (every ratio 1 but for a last-digit difference) is widened
    first: stepping by less than the floats' spacing there would never reach ``hi``."""
    if _thin(lo, hi):
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    steps = math.ceil((hi - first) / step - 1e-9)
    return [round(first + k * step, 12) for k in range(steps + 1)]


def _thin(lo: float, hi: float) -> bool:
    """Whether ``[lo, hi]`` is empty or narrower than a billionth of its magnitude."""
    return hi - lo <= 1e-9 * max(abs(lo), abs(hi), 1.0)


@dataclass(frozen=True)
class Linear:
    """Maps data values ``lo..hi`` to pixels ``a..b``."""

    lo: float
    hi: float
    a: float
    b: float

    def __call__(self, value: float) -> float:
        span = self.hi - self.lo or 1.0
        return self.a + (value - self.lo) / span * (self.b - self.a)


def span_of(
    values: Sequence[float], *, zero: bool = False, pad: float = 0.0
) -> tuple[float, float]:
    """Nice limits for ``values`` (including zero when asked; ``pad`` of the range beyond)."""
    found = [v for v in values if math.isfinite(v)] or [0.0]
    lo, hi = min(found), max(found)
    if zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if pad:
        margin = pad * ((hi - lo) if not _thin(lo, hi) else (abs(hi) or 1.0))
        return lo - margin, hi + margin
    ticks = nice_ticks(lo, hi)
    return ticks[0], ticks[-1]


@dataclass
class Canvas:
    """An SVG being drawn: marks are appended as strings."""

    width: int
    height: int
    parts: list[str] = field(default_factory=list)

    def text(
        self,
        x: float,
        y: float,
        content: str,
        anchor: str = "start",
        cls: str = "",
        rotate: bool = False,
    ) -> None:
        turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
        klass = f' class="{cls}"' if cls else ""
        self.parts.append(
            f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}{turn}>'
            f"{escape(content)}</text>"
        )

    def line(
        self, x1: float, y1: float, x2: float, y2: float, stroke: str = AXIS, width: float = 1
    ) -> None:
        self.parts.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{stroke}" stroke-width="{width}"/>'
        )

    def rect(self, x: float, y: float, w: float, h: float, fill: str, tip: str = "") -> None:
        inner = f"<title>{escape(tip)}</title>" if tip else ""
        self.parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
            f'fill="{fill}">{inner}</rect>'
        )

    def circle(
        self, x: float, y: float, fill: str, tip: str = "", r: float = 4, opacity: float = 0.85
    ) -> None:
        inner = f"<title>{escape(tip)}</title>" if tip else ""
        self.parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{fill}" fill-opacity="{opacity}">'
            f"{inner}</circle>"
        )

    def legend(self, x: float, y: float, items: Sequence[tuple[str, str]]) -> None:
        """Swatches left to right, wrapping at the canvas edge."""
        cx, cy = x, y
        for label, fill in items:
            width = 18 + 6.5 * len(label)
            if cx + width > self.width - 8 and cx > x:
                cx, cy = x, cy + 16
            self.rect(cx, cy - 9, 10, 10, fill)
            self.text(cx + 14, cy, label, cls="small")
            cx += width + 10

    def y_axis(self, scale: Linear, left: float, right: float, label: str) -> None:
        """Ticks, grid lines and a label on the left of a plot area."""
        for tick in nice_ticks(scale.lo, scale.hi):
            if scale.lo - 1e-12 <= tick <= scale.hi + 1e-12:
                y = scale(tick)
                self.line(left, y, right, y, GRID)
                self.text(left - 4, y + 4, fmt(tick), "end", "small")
        self.line(left, scale.a, left, scale.b)
        self.text(12, (scale.a + scale.b) / 2, label, "middle", "small", rotate=True)

    def x_axis(
        self, scale: Linear, y: float, label: str, show: Callable[[float], str] = fmt
    ) -> None:
        """Ticks below a plot area, each value written by ``show`` (e.g. as money)."""
        for tick in nice_ticks(scale.lo, scale.hi):
            if scale.lo - 1e-12 <= tick <= scale.hi + 1e-12:
                x = scale(tick)
                self.line(x, y, x, y + 4)
                self.text(x, y + 15, show(tick), "middle", "small")
        self.line(scale.a, y, scale.b, y)
        self.text((scale.a + scale.b) / 2, y + 30, label, "middle", "small")

    def svg(self, fig_id: str, title: str) -> str:
        return (
            f'<svg id="{escape(fig_id)}" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {self.width} {self.height}" width="{self.width}" '
            f'height="{self.height}" role="img" aria-labelledby="{escape(fig_id)}-title">'
            f'<title id="{escape(fig_id)}-title">{escape(title)}</title>'
            + "".join(self.parts)
            + "</svg>"
        )


def empty(fig_id: str, title: str, message: str) -> str:
    """A figure with nothing to plot says why, in the place the plot would be."""
    canvas = Canvas(WIDTH, 90)
    canvas.rect(0.5, 0.5, WIDTH - 1, 89, "#f9fafb")
    canvas.text(WIDTH / 2, 50, message, "middle", "note")
    return canvas.svg(fig_id, f"{title}: {message}")
