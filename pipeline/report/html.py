"""The report page: one HTML file, each figure beside the table of the numbers it draws.

Nothing is fetched when the page opens (no script, font, stylesheet or image link), so it
can be mailed, archived as a CI artifact and opened offline. The totals carry ids
(``total-problems``, ``total-answered``, ``total-completed``, ``total-degraded``,
``total-failed``) so a test can check them against a DuckDB count.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from html import escape
from statistics import median

from pipeline.money import usd
from pipeline.quality import NEAR_ZERO, size_label
from pipeline.report.data import STAGES, ReportData, StageLatency
from pipeline.report.figures import Figure, figures, route_label
from pipeline.report.page import CSS, Cell, Money, section, table
from pipeline.report.svg import fmt
from pipeline.results import ResultsLocation


def totals_text(data: ReportData) -> str:
    t = data.totals
    return (
        f'<p class="totals" id="totals"><span id="total-problems">{t.problems}</span> problems: '
        f'<span id="total-answered">{t.answered}</span> answered '
        f'(<span id="total-completed">{t.completed}</span> completed on their planned route, '
        f'<span id="total-degraded">{t.degraded}</span> degraded to the classical fallback), '
        f'<span id="total-failed">{t.failed}</span> failed; '
        f"in {t.runs} run(s) and {t.batches} batch(es), costing {usd(t.cost_usd)} in all.</p>"
    )


def _latency(data: ReportData, fig: Figure) -> str:
    by_backend: dict[str, dict[str, StageLatency]] = defaultdict(dict)
    for s in data.latency:
        by_backend[s.backend][s.stage] = s
    rows: list[list[Cell]] = []
    for backend, stages in by_backend.items():
        cells: list[Cell] = [backend, max(s.n for s in stages.values())]
        for st in STAGES:
            found = stages.get(st)
            cells.append(f"{fmt(found.p50)} / {fmt(found.p95)}" if found else None)
        rows.append(cells)
    text = (
        "Seconds each problem spent per stage (queue: submission to claim; total: "
        "submission to answer). A batch's stage times are shared by its problems; "
        "hover a box for its minimum and maximum."
    )
    headers = ("backend", "problems", *STAGES)
    return section(
        "latency",
        "Latency per stage",
        fig,
        text,
        [table("Latency: p50 / p95 seconds", headers, rows)],
    )


def _routes(data: ReportData, fig: Figure) -> str:
    overall: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in data.routes:
        overall[(r.route, r.solver_path, r.status)][0] += 1
        overall[(r.route, r.solver_path, r.status)][1] += r.problems
    rows = [(*key, runs, problems) for key, (runs, problems) in sorted(overall.items())]
    per_run = [
        (r.run_id, route_label(r.route, r.solver_path, r.status), r.problems) for r in data.routes
    ]
    tables = [
        table("All runs", ("route", "solver path", "status", "runs", "problems"), rows),
        "<details><summary>Per run</summary>"
        + table("Per run", ("run", "route / solver path / status", "problems"), per_run)
        + "</details>",
    ]
    text = "Which path produced each answer, run by run (oldest first)."
    return section("routes", "Answers by route, solver path and status", fig, text, tables)


def _fallbacks(data: ReportData, fig: Figure) -> str:
    rows = [(f.code, f.status, f.backend, f.problems, f.example) for f in data.fallbacks]
    headers = ("reason code", "status", "answered by", "problems", "example reason")
    text = (
        "Why problems left their planned route (degraded: answered by the classical "
        "fallback) or got no answer (failed)."
    )
    return section("fallbacks", "Fallback reasons", fig, text, [table("Reasons", headers, rows)])


def _cost(data: ReportData, fig: Figure) -> str:
    rows = [
        (c.backend, c.tenant, c.problems, c.answers, Money(c.cost_usd), _money(c.per_answer))
        for c in data.costs
    ]
    spend = [
        (s.backend, s.batches, s.backend_attempts, s.backend_failures, Money(s.quantum_cost_usd))
        for s in data.spend
    ]
    text = (
        "Cost per answer = everything the rows cost (what failed quantum attempts spent "
        "before a fallback included) over the answers (completed or degraded), by the "
        "backend that answered and the tenant; the 'all backends' rows also carry the cost "
        "of problems that failed with no answer."
    )
    tables = [
        table(
            "Cost by backend and tenant",
            ("backend", "tenant", "problems", "answers", "cost USD", "USD per answer"),
            rows,
        ),
        table(
            "Quantum spend by batch backend",
            ("backend", "batches", "backend attempts", "failed attempts", "quantum USD"),
            spend,
        ),
    ]
    return section("cost", "Cost per successful answer", fig, text, tables)


def _money(amount: float | None) -> Money | None:
    return None if amount is None else Money(amount)


def _quality(data: ReportData, fig: Figure) -> str:
    groups = data.quality_groups
    rows = [
        (
            g.kind,
            size_label(g.size_bin),
            g.answers,
            g.with_reference,
            g.matching,
            g.mean_answer_ratio,
            g.min_answer_ratio,
            g.mean_expectation_ratio,
            g.by_gap,
        )
        for g in groups
    ]
    text = (
        "Quantum answers against the classical reference (reference_objective). Ratio = "
        "min(|value|, |reference|) / max(|value|, |reference|): obj/ref for a maximum, 1 when "
        "the reference is matched; for the expectation, the QAOA expectation (over feasible "
        "outcomes for a constrained kind) in its place. A ratio is drawn only where the "
        "reference has the value's sign and is not near zero (at least "
        f"{NEAR_ZERO:.0%} of the problem's scale, the sum of its absolute coefficients); "
        "other answers are judged by their gap, below. Sizes are binned by powers of two."
    )
    text += _unjudged(data)
    headers = (
        "kind",
        "variables",
        "answers",
        "with reference",
        "matching",
        "mean ratio",
        "min ratio",
        "mean expectation ratio",
        "by gap",
    )
    return section(
        "quality", "Quality against the reference", fig, text, [table("Quality", headers, rows)]
    )


def _unjudged(data: ReportData) -> str:
    """What the quality figures leave out, and why: no reference yet, or classical."""
    answers = sum(g.answers for g in data.quality_groups)
    judged = sum(g.with_reference for g in data.quality_groups)
    text = ""
    if judged < answers:
        text += (
            f" <strong>No reference objective yet for {answers - judged} of {answers} "
            "quantum answer(s)</strong>: those are counted but not judged."
        )
    if data.classical_answers:
        text += (
            f" {data.classical_answers} classical answer(s) are not judged: a classical "
            "answer is the classical reference."
        )
    return text


def _quality_gap(data: ReportData, fig: Figure) -> str:
    rows = [
        (
            g.kind,
            size_label(g.size_bin),
            g.by_gap,
            g.mean_answer_gap,
            g.max_answer_gap,
            g.mean_expectation_gap,
        )
        for g in data.quality_groups
        if g.by_gap
    ]
    text = (
        "Answers whose reference is near zero or of the other sign, where a ratio would mean "
        "nothing (a miss of 0.4 against a reference of 0.08 reads as −3.7): the gap "
        "|reference − value| in the problem's units in the table, and as a share of the "
        "problem's scale in the plot, so problems of different sizes compare."
    )
    headers = ("kind", "variables", "answers", "mean gap", "max gap", "mean expectation gap")
    return section(
        "quality-gap",
        "Quality where a ratio means nothing: the gap",
        fig,
        text,
        [table("Gap to the reference", headers, rows)],
    )


def _first_attempt(data: ReportData, attempt: Figure, wait: Figure) -> str:
    rows = [
        (
            f.backend,
            f.tenant,
            f.problems,
            f.first_attempt_ok,
            f.rate,
            f.queue_p50_s,
            f.queue_p95_s,
            f.queue_max_s,
        )
        for f in data.first_attempts
    ]
    headers = (
        "backend",
        "tenant",
        "problems",
        "first-attempt successes",
        "rate",
        "queue p50 s",
        "queue p95 s",
        "queue max s",
    )
    text = "A first-attempt success is a problem completed on its first claim, without fallback."
    first = section(
        "first-attempt",
        "First-attempt success and queue wait",
        attempt,
        text,
        [table("First attempts", headers, rows)],
    )
    waits = sorted(data.queue_waits)
    summary = (
        [("problems", len(waits)), ("median s", median(waits)), ("max s", waits[-1])]
        if waits
        else []
    )
    second = section(
        "queue-wait",
        "Queue wait",
        wait,
        "Seconds from submission to claim.",
        [table("Queue wait", ("", "value"), summary)],
    )
    return first + second


def _drift(data: ReportData, fig: Figure) -> str:
    pairs: dict[tuple[str, str], list[float]] = defaultdict(list)
    for d in data.drift.points:
        pairs[(d.stored_backend, d.replay_backend)].append(d.difference or 0.0)
    rows = [
        (a, b, len(v), sum(v) / len(v), sum(abs(x) for x in v) / len(v), max(abs(x) for x in v))
        for (a, b), v in sorted(pairs.items())
    ]
    headers = ("stored on", "replayed on", "answers", "mean diff", "mean |diff|", "max |diff|")
    text = (
        "Stored quantum answers replayed on another backend by <code>qhopper drift</code> "
        "(read from drift/: problem_id, stored_backend, replay_backend, stored_expected, "
        "replay_expected, stored_objective, replay_objective, difference). Points on the "
        "diagonal did not drift."
    )
    if data.drift.note:
        text += f" <strong>{escape(data.drift.note)}</strong>."
    return section(
        "drift", "Simulator versus device drift", fig, text, [table("Drift", headers, rows)]
    )


def _canary(data: ReportData, fig: Figure) -> str:
    rows = [
        (
            c.canary_backend,
            c.main_backend,
            c.rows,
            c.failed,
            c.mean_difference,
            c.mean_abs_difference,
            c.max_abs_difference,
            c.best_sample_agreement,
            c.main_seconds_p50,
            c.canary_seconds_p50,
            Money(c.main_cost_usd),
            Money(c.canary_cost_usd),
        )
        for c in data.canary.pairs
    ]
    headers = (
        "candidate",
        "main",
        "answers",
        "failed",
        "mean diff",
        "mean |diff|",
        "max |diff|",
        "same best sample",
        "main s p50",
        "candidate s p50",
        "main USD",
        "candidate USD",
    )
    text = (
        "A seeded share of each run's quantum batches, sampled again on a candidate backend "
        "(<code>[canary] backend</code>) at the angles the main backend reached, beside the "
        "run (read from canary/). Difference: the candidate's expectation minus the main "
        "one's, as a share of the classical reference (of the problem's scale where the "
        "reference is near zero); seconds and USD: each side's per answer. "
        "<code>qhopper canary</code> gives the verdict against the configured tolerance."
    )
    if data.canary.note:
        text += f" <strong>{escape(data.canary.note)}</strong>."
    return section(
        "canary",
        "Canary: candidate against main backend",
        fig,
        text,
        [table("Canary", headers, rows)],
    )


def render(data: ReportData, location: ResultsLocation, generated: datetime | None = None) -> str:
    """The whole page as one string."""
    figs = figures(data)
    when = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    scope = []
    if data.since:
        scope.append(f"answers since {data.since.isoformat()}")
    if data.run_id:
        scope.append(f"run {escape(data.run_id)}")
    meta = (
        f"Results in <code>{escape(str(location))}</code>, "
        f"{'; '.join(scope) if scope else 'every run'}; generated {when}."
    )
    nav = "".join(
        f'<a href="#{a}">{n}</a>'
        for a, n in (
            ("latency", "Latency"),
            ("routes", "Routes"),
            ("fallbacks", "Fallbacks"),
            ("cost", "Cost"),
            ("quality", "Quality"),
            ("quality-gap", "Gaps"),
            ("first-attempt", "First attempts"),
            ("queue-wait", "Queue wait"),
            ("drift", "Drift"),
            ("canary", "Canary"),
        )
    )
    body = "".join(
        (
            _latency(data, figs["fig-latency"]),
            _routes(data, figs["fig-routes"]),
            _fallbacks(data, figs["fig-fallbacks"]),
            _cost(data, figs["fig-cost"]),
            _quality(data, figs["fig-quality"]),
            _quality_gap(data, figs["fig-quality-gap"]),
            _first_attempt(data, figs["fig-first-attempt"], figs["fig-queue-wait"]),
            _drift(data, figs["fig-drift"]),
            _canary(data, figs["fig-canary"]),
        )
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>qhopper report</title><style>{CSS}</style></head><body>"
        f'<h1>qhopper report</h1><p class="meta">{meta}</p>{totals_text(data)}'
        f"<nav>{nav}</nav>{body}</body></html>\n"
    )
