"""The report's figures, one function per question an analyst asks of the results.

Every figure is always on the page under a fixed id (``FIGURE_IDS``): when there is nothing
to plot (no reference objective yet, no fallback, no drift or canary data) it says so in its place,
so a test, a reader and a diff of two reports can count on the same set.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from pipeline.money import usd
from pipeline.report import charts, svg
from pipeline.report.data import STAGES, QualityPoint, ReportData
from pipeline.report.replays import CANARY_PANELS

FIGURE_IDS = (
    "fig-latency",
    "fig-routes",
    "fig-fallbacks",
    "fig-cost",
    "fig-quality",
    "fig-quality-gap",
    "fig-first-attempt",
    "fig-queue-wait",
    "fig-drift",
    "fig-canary",
)
MAX_RUNS = 40
STATUS_COLORS = {"completed": svg.PALETTE[2], "degraded": svg.PALETTE[1], "failed": svg.PALETTE[3]}


@dataclass(frozen=True)
class Figure:
    fig_id: str
    title: str
    svg: str
    empty: bool


def figures(data: ReportData) -> dict[str, Figure]:
    """Every figure of the report, by id."""
    drawn = (
        latency(data),
        routes(data),
        fallbacks(data),
        cost(data),
        quality(data),
        quality_gap(data),
        first_attempt(data),
        queue_wait(data),
        drift(data),
        canary(data),
    )
    return {figure.fig_id: figure for figure in drawn}


def _empty(fig_id: str, title: str, message: str) -> Figure:
    return Figure(fig_id, title, svg.empty(fig_id, title, message), True)


def latency(data: ReportData) -> Figure:
    fig_id, title = "fig-latency", "Per-stage latency by backend (seconds per problem)"
    if not data.latency:
        return _empty(fig_id, title, "no problems in the results yet")
    panels = [
        (
            stage,
            [
                charts.Box(s.backend, s.n, s.minimum, s.p25, s.p50, s.p75, s.p95, s.maximum)
                for s in data.latency
                if s.stage == stage
            ],
        )
        for stage in STAGES
    ]
    return Figure(fig_id, title, charts.box_panels(fig_id, title, panels), False)


def route_label(route: str, solver_path: str, status: str) -> str:
    return f"{route} / {solver_path} / {status}"


def routes(data: ReportData) -> Figure:
    fig_id, title = "fig-routes", "Answers by route, solver path and status, per run"
    if not data.routes:
        return _empty(fig_id, title, "no problems in the results yet")
    per_run: dict[str, dict[str, float]] = defaultdict(dict)
    for r in data.routes:
        per_run[r.run_id][route_label(r.route, r.solver_path, r.status)] = r.problems
    runs = list(per_run)[-MAX_RUNS:]
    categories = sorted({route_label(r.route, r.solver_path, r.status) for r in data.routes})
    shown = f"{title} (the last {MAX_RUNS} runs)" if len(per_run) > MAX_RUNS else title
    columns = [(run, per_run[run]) for run in runs]
    return Figure(
        fig_id, shown, charts.stacked_columns(fig_id, shown, columns, categories, "problems"), False
    )


def fallbacks(data: ReportData) -> Figure:
    fig_id, title = "fig-fallbacks", "Fallback and failure reasons (problems)"
    if not data.fallbacks:
        return _empty(fig_id, title, "no fallback: every answer came from its planned route")
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for f in data.fallbacks:
        counts[(f.code, f.status)] += f.problems
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    bars = [
        charts.Bar(f"{code} ({status})", count, STATUS_COLORS.get(status, svg.PALETTE[7]))
        for (code, status), count in ordered
    ]
    return Figure(fig_id, title, charts.hbars(fig_id, title, bars, "problems"), False)


def cost(data: ReportData) -> Figure:
    fig_id, title = "fig-cost", "Cost per answer, failed attempts included (USD)"
    priced = [c for c in data.costs if c.per_answer is not None]
    if not priced:
        return _empty(fig_id, title, "no answer yet: nothing to divide the cost by")
    bars = [
        charts.Bar(
            f"{c.backend} · {c.tenant}",
            c.per_answer or 0.0,
            svg.color(i),
            f"{c.backend}, tenant {c.tenant}: {usd(c.cost_usd)} over {c.answers} answer(s)",
        )
        for i, c in enumerate(priced)
    ]
    drawn = charts.hbars(fig_id, title, bars, "USD per answer", show=usd)
    return Figure(fig_id, title, drawn, False)


def quality(data: ReportData) -> Figure:
    fig_id, title = "fig-quality", "Approximation ratio against the reference, by kind and size"
    judged = [q for q in data.quality if q.answer_ratio is not None]
    if not judged:
        return _empty(fig_id, title, _why_no_ratio(data))
    kinds = sorted({q.kind for q in data.quality})
    panels = []
    for name, attr in (("best sample", "answer_ratio"), ("expectation", "expectation_ratio")):
        series = []
        for i, kind in enumerate(kinds):
            points = [
                (float(q.n_variables), value, f"{kind}, n={q.n_variables}: {value:.4f}")
                for q in judged
                if q.kind == kind and (value := getattr(q, attr)) is not None
            ]
            if points:
                series.append(charts.Series(kind, svg.color(i), points))
        panels.append(charts.Panel(name, "variables", "ratio (1 = reference)", series, hline=1.0))
    return Figure(fig_id, title, charts.scatter_panels(fig_id, title, panels), False)


def _why_no_ratio(data: ReportData) -> str:
    if not data.quality:
        return "no reference objective yet: answers cannot be judged until one exists"
    return "no answer has a ratio that means something: see the gaps below"


def quality_gap(data: ReportData) -> Figure:
    fig_id = "fig-quality-gap"
    title = "Gap to a reference near zero or of the other sign, as a share of the problem's scale"
    gapped = [q for q in data.quality if q.answer_gap is not None and q.scale]
    if not gapped:
        return _empty(fig_id, title, "none: every answer with a reference has a ratio")
    kinds = sorted({q.kind for q in data.quality})
    panels = []
    for name, attr in (("best sample", "answer_gap"), ("expectation", "expectation_gap")):
        series = []
        for i, kind in enumerate(kinds):
            points = [
                (float(q.n_variables), gap / q.scale, _gap_tip(q, gap))
                for q in gapped
                if q.kind == kind and (gap := getattr(q, attr)) is not None and q.scale
            ]
            if points:
                series.append(charts.Series(kind, svg.color(i), points))
        label = "|reference − value| / scale"
        panels.append(charts.Panel(name, "variables", label, series, y_zero=True))
    return Figure(fig_id, title, charts.scatter_panels(fig_id, title, panels), False)


def _gap_tip(q: QualityPoint, gap: float) -> str:
    return (
        f"{q.kind}, n={q.n_variables}: reference {q.reference:.4g}, gap {gap:.4g} "
        f"(scale {q.scale or 0:.4g})"
    )


def first_attempt(data: ReportData) -> Figure:
    fig_id, title = "fig-first-attempt", "First-attempt success rate (attempts = 1, completed)"
    if not data.first_attempts:
        return _empty(fig_id, title, "no problems in the results yet")
    bars = [
        charts.Bar(
            f"{f.backend} · {f.tenant}",
            f.rate,
            svg.color(i),
            f"{f.backend}, tenant {f.tenant}: {f.first_attempt_ok} of {f.problems}",
        )
        for i, f in enumerate(data.first_attempts)
    ]
    return Figure(
        fig_id, title, charts.hbars(fig_id, title, bars, "share of problems", limit=1.0), False
    )


def queue_wait(data: ReportData) -> Figure:
    fig_id, title = "fig-queue-wait", "Queue wait: submission to claim (seconds)"
    if not data.queue_waits:
        return _empty(fig_id, title, "no problems in the results yet")
    return Figure(
        fig_id,
        title,
        charts.histogram(fig_id, title, data.queue_waits, "seconds in the queue"),
        False,
    )


def drift(data: ReportData) -> Figure:
    fig_id, title = "fig-drift", "Simulator versus device drift: stored against replayed"
    if not data.drift.points:
        return _empty(fig_id, title, data.drift.note or "no drift data yet")
    pairs = sorted({(d.stored_backend, d.replay_backend) for d in data.drift.points})
    panels = []
    for name, stored, replayed in (
        ("expectation", "stored_expected", "replay_expected"),
        ("best-sample objective", "stored_objective", "replay_objective"),
    ):
        series = []
        for i, (a, b) in enumerate(pairs):
            points = [
                (x, y, f"{d.problem_id}: {x:.4g} on {a}, {y:.4g} on {b}")
                for d in data.drift.points
                if (d.stored_backend, d.replay_backend) == (a, b)
                and (x := getattr(d, stored)) is not None
                and (y := getattr(d, replayed)) is not None
            ]
            series.append(charts.Series(f"{a} → {b}", svg.color(i), points))
        panels.append(charts.Panel(name, "stored", "replayed", series, diagonal=True))
    return Figure(fig_id, title, charts.scatter_panels(fig_id, title, panels), False)


def canary(data: ReportData) -> Figure:
    fig_id = "fig-canary"
    title = "Canary: the candidate's expectation difference, and each side's time and cost"
    if not data.canary.boxes:
        return _empty(fig_id, title, data.canary.note or "no canary data yet")
    panels = [
        (panel, [box for name, box in data.canary.boxes if name == panel])
        for panel in CANARY_PANELS
    ]
    return Figure(fig_id, title, charts.box_panels(fig_id, title, panels), False)
