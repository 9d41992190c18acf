"""The report page's building blocks: its stylesheet, and a section (a figure beside the
tables of the numbers it draws) and a table as HTML, with no script, font or link to fetch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from pipeline.money import usd
from pipeline.report.figures import Figure
from pipeline.report.svg import fmt

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #111827; margin: 0 auto; padding: 16px 24px 48px; max-width: 1320px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 17px; margin: 28px 0 6px; }
p.meta { color: #4b5563; margin: 0 0 12px; } nav a { margin-right: 12px; }
p.totals { font-size: 15px; background: #f3f4f6; padding: 10px 14px; border-radius: 6px; }
.pair { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
figure { margin: 0; flex: 0 1 620px; } figure svg { max-width: 100%; height: auto; }
.tables { flex: 1 1 380px; min-width: min-content; overflow-x: auto; }
table { border-collapse: collapse; margin: 0 0 12px; font-size: 13px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e5e7eb; text-align: left; }
td { white-space: nowrap; } td.long { white-space: normal; min-width: 16em; }
th { background: #f9fafb; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 2px 0 4px; }
.note { color: #6b7280; font-style: italic; } p.note { margin: 4px 0 10px; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; fill: #111827; }
svg text.small { font-size: 10.5px; fill: #374151; } svg text.note { fill: #6b7280; }
"""


@dataclass(frozen=True)
class Money:
    """A cell in US dollars, written by :func:`pipeline.money.usd`."""

    usd: float


Cell = str | int | float | Money | None


def table(caption: str, headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """A plain table; numbers right-aligned, money as money, None shown as a dash."""
    if not rows:
        return f'<p class="note">{escape(caption)}: none.</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for value in row:
            if value is None:
                cells.append('<td class="n">–</td>')
            elif isinstance(value, (bool, str)):
                wrap = ' class="long"' if len(str(value)) > 30 else ""
                cells.append(f"<td{wrap}>{escape(str(value))}</td>")
            elif isinstance(value, Money):
                cells.append(f'<td class="n">{usd(value.usd)}</td>')
            elif isinstance(value, int):
                cells.append(f'<td class="n">{value}</td>')
            else:
                cells.append(f'<td class="n">{fmt(value)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def section(anchor: str, heading: str, figure: Figure, text: str, tables: Sequence[str]) -> str:
    empty = " empty" if figure.empty else ""
    return (
        f'<section id="{anchor}"><h2>{escape(heading)}</h2>'
        f'<p class="note">{text}</p><div class="pair">'
        f'<figure class="figure{empty}" data-figure="{figure.fig_id}">{figure.svg}'
        f"<figcaption hidden>{escape(figure.title)}</figcaption></figure>"
        f'<div class="tables">{"".join(tables)}</div></div></section>'
    )
