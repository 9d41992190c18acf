"""``qhopper report``: the page's numbers against DuckDB, its figures, and a real browser.

The browser test fills a home through the real CLI (``qhopper submit`` and ``qhopper run``),
writes the report with ``qhopper report`` and loads it in headless Chromium: no console
message (the page has no script, so any is a fault), every figure there, the totals in
the text equal to a DuckDB count. It skips, saying so, where no Chromium is installed.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.canary.vocabulary import CanaryStatus
from pipeline.report import FIGURE_IDS, build_report, write_report
from pipeline.results import (
    BatchRow,
    CanaryRow,
    ProblemRow,
    RunSummary,
    query,
    to_table,
    write_table,
)
from pipeline.results.files import dataset_path

QHOPPER = Path(sys.executable).parent / "qhopper"
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
TOTAL_IDS = ("problems", "answered", "completed", "degraded", "failed")


def write_rich_results(
    results_dir: Path, references: bool = True, drift: bool = True, canary: bool = True
) -> None:
    """Two runs on two days, two tenants, references, fallbacks, a failure, drift rows and
    canary rows."""
    day1 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    day2 = day1 + timedelta(days=1)
    problems: dict[tuple[date, str], list[ProblemRow]] = {}
    for run, at, backend in (("r-one", day1, "aer"), ("r-two", day2, "aer-noisy")):
        rows = []
        for i in range(12):
            n = 6 + 2 * (i % 3)
            reference = 10.0 + n
            rows.append(
                ProblemRow(
                    problem_id=f"p-{run}-{i}",
                    key=f"k-{run}-{i}",
                    run_id=run,
                    batch_id=f"b-{run}-q",
                    kind="maxcut" if i % 2 else "qubo",
                    n_variables=n,
                    tenant="alpha" if i < 8 else "beta",
                    attempts=1 if i % 5 else 2,
                    route="quantum",
                    solver_path="simulator",
                    backend=backend,
                    status="completed",
                    objective=reference - (i % 4),
                    expected_objective=reference * 0.8,
                    objective_scale=3.0 * reference,
                    reference_objective=reference if references else None,
                    reference_solver="ortools-cpsat" if references else None,
                    reference_proven=True if references else None,
                    cost_usd=1e-6 * (i + 1),
                    t_queue_s=0.5 + i * 0.1,
                    t_compile_s=0.05,
                    t_execute_s=0.2 + 0.01 * i,
                    t_post_s=0.01,
                    t_total_s=1.0 + 0.1 * i,
                    submitted_at=at - timedelta(seconds=2),
                    completed_at=at,
                )
            )
        rows[10] = near_zero_reference(rows[10], references)
        degraded = replace(
            rows[0],
            problem_id=f"p-{run}-fallback",
            key=f"k-{run}-fallback",
            batch_id=f"b-{run}-c",
            route="classical",
            solver_path="classical",
            backend="ortools-cpsat",
            status="degraded",
            fallback_code="route_budget",
            fallback_reason="quantum would cost more than the budget allows",
            expected_objective=None,
            objective=16.0,
        )
        failed = replace(
            rows[1],
            problem_id=f"p-{run}-failed",
            key=f"k-{run}-failed",
            batch_id=f"b-{run}-c",
            route=None,
            solver_path=None,
            backend=None,
            status="failed",
            attempts=3,
            objective=None,
            expected_objective=None,
            fallback_code="attempt_limit",
            fallback_reason="attempt limit reached",
        )
        problems[(at.date(), f"b-{run}-q")] = rows
        problems[(at.date(), f"b-{run}-c")] = [degraded, failed]
        batch = BatchRow(
            batch_id=f"b-{run}-q",
            run_id=run,
            route="quantum",
            route_reason="feasible",
            shape_key="s",
            kind="maxcut,qubo",
            size=12,
            backend=backend,
            backend_attempts=3,
            backend_failures=1,
            quantum_cost_usd=1e-4,
            completed_at=at,
        )
        write_table(
            dataset_path(results_dir, "batches", at.date(), batch.batch_id),
            to_table([batch], BatchRow),
        )
        summary = RunSummary(run_id=run, backend=backend, executor="inline", problems=14)
        write_table(
            dataset_path(results_dir, "runs", at.date(), run),
            to_table([replace(summary, started_at=at, completed_at=at)], RunSummary),
        )
    for (day, batch_id), rows in problems.items():
        write_table(
            dataset_path(results_dir, "problems", day, batch_id), to_table(rows, ProblemRow)
        )
    if canary:
        write_canary_rows(results_dir, day2)
    if not drift:
        return
    replayed = pa.table(
        {
            "problem_id": [f"p-r-one-{i}" for i in range(6)],
            "stored_backend": ["aer"] * 6,
            "replay_backend": ["aer-noisy"] * 6,
            "stored_expected": [10.0 + i for i in range(6)],
            "replay_expected": [9.5 + i for i in range(6)],
            "stored_objective": [12.0 + i for i in range(6)],
            "replay_objective": [12.0 + i - (i % 2) for i in range(6)],
            "difference": [-0.5] * 6,
        }
    )
    write_table(results_dir / "drift" / "date=2026-03-02" / "d-1.parquet", replayed)


def write_canary_rows(results_dir: Path, at: datetime) -> None:
    """Run r-two's canary: six answers on a candidate, the last one failed."""
    rows = [
        CanaryRow(
            run_id="r-two",
            batch_id="b-r-two",
            problem_id=f"p-r-two-{i}",
            kind="maxcut",
            n_variables=6,
            main_backend="aer-noisy",
            canary_backend="cand-x",
            status=CanaryStatus.OK if i < 5 else CanaryStatus.FAILED,
            error=None if i < 5 else "candidate: RuntimeError: down",
            main_expected=10.0,
            canary_expected=10.0 - 0.1 * i if i < 5 else None,
            expected_difference=-0.1 * i if i < 5 else None,
            relative_difference=-0.01 * i if i < 5 else None,
            main_objective=12.0,
            canary_objective=12.0 - (i % 2) if i < 5 else None,
            reference_objective=10.0,
            main_seconds=0.5,
            canary_seconds=2.0 if i < 5 else None,
            main_cost_usd=0.001,
            canary_cost_usd=0.25 if i < 5 else None,
            created_at=at,
        )
        for i in range(6)
    ]
    write_table(dataset_path(results_dir, "canary", at.date(), "r-two"), to_table(rows, CanaryRow))


def near_zero_reference(row: ProblemRow, references: bool) -> ProblemRow:
    """A QUBO whose reference, 0.08, is under 1 % of its scale (12): the old ratio of its
    best sample, 1 - |0.08 - 0.4536| / 0.08, was -3.67 and squashed every other point."""
    return replace(
        row,
        kind="qubo",
        objective=0.4536,
        expected_objective=-0.2936,
        objective_scale=12.0,
        reference_objective=0.08 if references else None,
    )


def write_mixed_results(results_dir: Path, problems: int = 2000) -> None:
    """A mixed run at scale, as an operator saw it (issue 23 item 4): MaxCut, QUBO and
    portfolio, quantum up to 20 variables and classical at ~70 sizes up to 400, a QUBO
    whose reference is near zero, costs of a few hundred-thousandths of a dollar and long
    backend names. Written as rows of the real schema: a second, not a ten-minute run."""
    rng = random.Random(23)
    at = datetime(2026, 4, 1, 9, tzinfo=UTC)
    kinds = ("maxcut", "qubo", "portfolio")
    rows = []
    for i in range(problems):
        kind = kinds[i % 3]
        quantum = i % 2 == 0
        n = rng.randint(4, 20) if quantum else rng.choice(range(21, 400, 5))
        reference = rng.uniform(5, 50) * (-1 if kind == "qubo" else 1)
        best = reference * rng.uniform(0.85, 1.0)
        rows.append(
            ProblemRow(
                problem_id=f"p{i:04d}",
                key=f"k{i:04d}",
                run_id="r-mixed",
                batch_id=f"b{i // 100:02d}",
                kind=kind,
                n_variables=n,
                tenant=("quant-research-emea", "risk-desk-apac")[i % 2],
                route="quantum" if quantum else "classical",
                solver_path="simulator" if quantum else "classical",
                backend="aer-noisy:fake_sherbrooke_127q" if quantum else "ortools-cpsat",
                status="completed",
                objective=best if quantum else reference,
                expected_objective=best * 0.9 if quantum else None,
                objective_scale=4 * abs(reference),
                reference_objective=reference if quantum and n <= 16 else None,
                cost_usd=3.31341e-05,
                t_queue_s=rng.uniform(0.1, 300),
                t_compile_s=rng.uniform(0, 2),
                t_execute_s=rng.uniform(0.01, 30),
                t_post_s=rng.uniform(0, 0.5),
                t_total_s=rng.uniform(1, 400),
                submitted_at=at,
                completed_at=at + timedelta(minutes=5),
            )
        )
    rows[0] = near_zero_reference(rows[0], references=True)
    for batch in sorted({r.batch_id for r in rows}):
        kept = [r for r in rows if r.batch_id == batch]
        write_table(
            dataset_path(results_dir, "problems", at.date(), batch), to_table(kept, ProblemRow)
        )


def svg_of(page: str, fig_id: str) -> str:
    start = page.index(f'<svg id="{fig_id}"')
    return page[start : page.index("</svg>", start)]


def y_ticks(figure: str) -> list[float]:
    """The values on a scatter's y axes: the right-aligned small labels."""
    found = re.findall(r'text-anchor="end" class="small">([^<]+)<', figure)
    return [float(v) for v in found]


def table_rows(page: str, caption: str) -> list[list[str]]:
    """The cells of the table with ``caption``, row by row, tags stripped."""
    start = page.index(f"<caption>{caption}</caption>")
    body = page[page.index("<tbody>", start) : page.index("</tbody>", start)]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body.split("</tr>") if row]


def test_a_mixed_run_at_scale_reads_well(tmp_path: Path) -> None:
    """A near-zero reference is shown apart, the ratio axis stays within (0, 1], sizes are
    binned, classical answers are not counted as missing a reference, money is money."""
    results = tmp_path / "results"
    write_mixed_results(results)
    page = build_report(results)
    quality = svg_of(page, "fig-quality")
    # The real ratios lie in [0.76, 1]: the axis spans them, not a near-zero reference's.
    ticks = y_ticks(quality)
    assert ticks and min(ticks) >= 0.7 and max(ticks) <= 1.1, ticks
    groups = table_rows(page, "Quality")
    judged = sum(int(row[3]) - int(row[8]) for row in groups)  # with a reference, not by gap
    assert quality.count("<circle") == 2 * judged  # best sample and expectation
    assert "reference 0.08, gap 0.3736" in svg_of(page, "fig-quality-gap")  # shown apart
    (gapped,) = table_rows(page, "Gap to the reference")
    assert gapped[0] == "qubo" and gapped[2:5] == ["1", "0.374", "0.374"]
    assert {(row[0], row[1]) for row in groups} <= {
        (kind, size)
        for kind in ("maxcut", "portfolio", "qubo")
        for size in ("1–8", "9–16", "17–32")
    }
    assert sum(int(row[2]) for row in groups) == 1000  # every quantum answer, no classical one
    lacking = sum(int(row[2]) - int(row[3]) for row in groups)
    assert f"No reference objective yet for {lacking} of 1000 quantum answer(s)" in page
    assert "1000 classical answer(s) are not judged" in page
    assert "costing $0.066 in all" in page and "$0.000033" in page
    assert not re.search(r"\$[0-9.]+e[-+]", page), "money printed with an exponent"
    if CHROMIUM is not None:
        assert_fits(page, 1280, tmp_path)


def assert_fits(page: str, width: int, tmp_path: Path) -> None:
    """At ``width`` px the page scrolls only down: no table wider than the viewport or its
    box, every table measured in headless Chromium (the page's closed details opened)."""
    probe = tmp_path / f"fit-{width}.html"
    probe.write_text(page.replace("</body>", f"{MEASURE}</body>"))
    with tempfile.TemporaryDirectory() as profile:
        loaded = chromium(
            f"--window-size={width},1200", "--dump-dom", probe.as_uri(), profile=Path(profile)
        )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    found = re.search(r'<pre id="measured">(.*?)</pre>', loaded.stdout)
    assert found, loaded.stdout[-2000:]
    measured = json.loads(found.group(1))
    assert measured["view"] == width, measured
    assert measured["scroll"] <= width and not measured["wide"], measured


# Measures the page after layout: its scroll width, and every table that pokes out of the
# viewport or of the box that holds it (a table scrolled sideways inside its box is cut).
MEASURE = """<script>
for (const d of document.querySelectorAll("details")) d.open = true;
const view = window.innerWidth;
const wide = [...document.querySelectorAll("table")].filter((t) => {
  const box = t.closest(".tables") || t.parentElement;
  return t.getBoundingClientRect().right > view + 0.5 || box.scrollWidth > box.clientWidth + 1;
}).map((t) => (t.caption ? t.caption.textContent : "?"));
const scroll = document.documentElement.scrollWidth;
const out = document.createElement("pre");
out.id = "measured";
out.textContent = JSON.stringify({ view, scroll, wide });
document.body.append(out);
</script>"""


def totals_in(page: str) -> dict[str, int]:
    found = {name: re.search(rf'id="total-{name}">(\d+)<', page) for name in TOTAL_IDS}
    assert all(found.values()), f"a total is missing from the page: {found}"
    return {name: int(match.group(1)) for name, match in found.items() if match}


def duckdb_totals(results_dir: Path, where: str = "TRUE") -> dict[str, int]:
    (row,) = query(
        results_dir,
        "SELECT count(*) AS problems, "
        "count(*) FILTER (status IN ('completed', 'degraded')) AS answered, "
        "count(*) FILTER (status = 'completed') AS completed, "
        "count(*) FILTER (status = 'degraded') AS degraded, "
        f"count(*) FILTER (status = 'failed') AS failed FROM problems WHERE {where}",
    ).to_pylist()
    return {name: int(value) for name, value in row.items()}


def assert_self_contained(page: str) -> None:
    """Nothing on the page reaches out: no script, stylesheet, font, image or frame link."""
    for pattern in (r"<script", r"<link", r"<img", r"<iframe", r"\bsrc=", r"url\(", r"@import"):
        assert not re.search(pattern, page, re.IGNORECASE), f"the page has {pattern}"
    links = re.findall(r'href="([^"]*)"', page)
    assert all(link.startswith("#") for link in links), links


def test_every_figure_is_drawn_and_the_totals_match_duckdb(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_rich_results(results)
    info = write_report(results, tmp_path / "report.html")
    page = info.path.read_text()
    assert info.bytes == len(page.encode()) and info.figures == len(FIGURE_IDS)
    for fig_id in FIGURE_IDS:
        assert f'<svg id="{fig_id}"' in page, fig_id
    assert 'class="figure empty"' not in page, "a figure had nothing to plot"
    assert (
        totals_in(page)
        == duckdb_totals(results)
        == {
            "problems": 28,
            "answered": 26,
            "completed": 24,
            "degraded": 2,
            "failed": 2,
        }
    )
    assert "aer-noisy" in page and "route_budget" in page and "attempt_limit" in page
    assert "No reference objective yet" not in page and "no drift data yet" not in page
    assert_self_contained(page)


def test_filters_by_date_and_run(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_rich_results(results)
    since = build_report(results, since=date(2026, 3, 2))
    assert totals_in(since) == duckdb_totals(results, "run_id = 'r-two'")
    one = build_report(results, run_id="r-one")
    assert totals_in(one) == duckdb_totals(results, "run_id = 'r-one'")
    assert "aer-noisy" not in one.split('id="drift"')[0]  # r-one ran on aer only
    assert totals_in(build_report(results, run_id="nope"))["problems"] == 0


def test_an_empty_home_and_missing_references_and_drift_say_so(tmp_path: Path) -> None:
    page = build_report(tmp_path / "results")
    assert totals_in(page)["problems"] == 0
    assert page.count('class="figure empty"') == len(FIGURE_IDS)
    assert "no drift data yet" in page
    results = tmp_path / "more"
    write_rich_results(results, references=False, drift=False, canary=False)
    page = build_report(results)
    assert "no reference objective yet" in page
    # 24 quantum answers lack one; the 2 classical answers are references, not missing one.
    assert "No reference objective yet for 24 of 24 quantum answer(s)" in page
    assert "2 classical answer(s) are not judged" in page
    assert "no drift data yet" in page
    assert "no canary data yet" in page
    assert page.count('class="figure empty"') == 4  # quality, its gaps, drift and canary


def test_the_canary_section_sets_both_backends_side_by_side(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_rich_results(results)
    section = build_report(results).split('<section id="canary">', 1)[1].split("</section>")[0]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", section)
    # candidate, main, answers, failed, mean diff, mean |diff|, max |diff|, same best sample,
    # main s p50, candidate s p50, main USD, candidate USD
    assert cells[:4] == ["cand-x", "aer-noisy", "6", "1"]
    assert [float(c) for c in cells[4:10]] == pytest.approx([-0.02, 0.02, 0.04, 0.6, 0.5, 2.0])
    assert cells[10:] == ["$0.0060", "$1.25"]
    for label in ("aer-noisy (main)", "cand-x vs aer-noisy", "seconds per answer"):
        assert label in section, label
    one = build_report(results, run_id="r-one")
    assert "canary/ has no rows for these runs" in one.split('<section id="canary">', 1)[1]


def test_the_cli_writes_the_report_to_the_home_by_default(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_rich_results(home / "results")
    done = subprocess.run(
        [str(QHOPPER), "report", "--home", str(home), "--run", "r-two"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"{home / 'report.html'}" in done.stdout and f"{len(FIGURE_IDS)} figures" in done.stdout
    bad = subprocess.run(
        [str(QHOPPER), "report", "--home", str(home), "--since", "yesterday"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2


def qhopper(*args: str, home: Path) -> str:
    done = subprocess.run(
        [str(QHOPPER), *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"qhopper {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


def fill_home(home: Path) -> None:
    """A few small problems through the real CLI: seconds, not minutes."""
    problems = [
        {"kind": "maxcut", "n": 4, "edges": [[0, 1], [1, 2], [2, 3], [3, 0]], "tenant": "alpha"},
        {"kind": "maxcut", "n": 4, "edges": [[0, 1], [1, 2], [2, 3], [0, 2]], "tenant": "beta"},
        {"kind": "maxcut", "n": 5, "edges": [[0, 1], [1, 2], [2, 3], [3, 4], [4, 0]]},
        {"kind": "qubo", "n": 3, "linear": [[0, -1], [2, 1]], "quadratic": [[0, 1, 2]]},
        {"kind": "maxcut", "n": 4, "edges": [[0, 1], [2, 3]], "route": "classical"},
    ]
    source = home.parent / "problems.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in problems))
    qhopper("submit", str(source), home=home)
    qhopper("run", home=home)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_messages(stderr: str) -> list[str]:
    """What the page logged: Chromium writes every console message as a CONSOLE line."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH (install Debian's 'chromium' to run the browser test)",
)
def test_the_report_in_headless_chromium(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fill_home(home)
    report = tmp_path / "report.html"
    qhopper("report", "--out", str(report), home=home)
    page = report.read_text()
    assert_self_contained(page)

    # The console scan is not vacuous: a page that throws is caught by it.
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>throw new Error('on purpose')</script></body></html>")
    with tempfile.TemporaryDirectory() as profile:
        caught = chromium(
            "--enable-logging=stderr", "--v=0", "--dump-dom", broken.as_uri(), profile=Path(profile)
        )
    assert any("on purpose" in m for m in console_messages(caught.stderr)), caught.stderr[-2000:]

    with tempfile.TemporaryDirectory() as profile:
        loaded = chromium(
            "--enable-logging=stderr", "--v=0", "--dump-dom", report.as_uri(), profile=Path(profile)
        )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert console_messages(loaded.stderr) == []
    dom = loaded.stdout
    for fig_id in FIGURE_IDS:
        assert re.search(rf'<svg id="{fig_id}"', dom), f"{fig_id} is not in the rendered page"
    assert dom.count("<svg ") == len(FIGURE_IDS)
    assert totals_in(dom) == duckdb_totals(home / "results")
    assert totals_in(dom)["problems"] == 5
    (judged,) = query(
        home / "results", "SELECT count(reference_objective) AS n FROM problems"
    ).to_pylist()
    assert ("no reference objective yet" in dom) == (judged["n"] == 0)
    (scaled,) = query(
        home / "results",
        "SELECT count(*) FILTER (objective_scale > 0) AS n, count(*) AS answered FROM problems "
        "WHERE objective IS NOT NULL",
    ).to_pylist()
    assert scaled["n"] == scaled["answered"] == 5  # every answer can be judged near zero
    assert "no drift data yet" in dom

    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        taken = chromium(
            "--window-size=1320,2400",
            f"--screenshot={shot}",
            report.as_uri(),
            profile=Path(profile),
        )
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]


def test_money_reads_as_money() -> None:
    from pipeline.money import usd

    assert [usd(v) for v in (3.31341e-05, 3.3134, 1204.5, 0.42, 0.0012, 0.0099999)] == [
        "$0.000033",
        "$3.31",
        "$1,204.50",
        "$0.42",
        "$0.0012",
        "$0.010",
    ]
    assert [usd(v) for v in (0.0, 4e-7, 9.9e-7, 1e-6, -0.5)] == [
        "$0",
        "<$0.000001",
        "<$0.000001",
        "$0.000001",
        "-$0.50",
    ]


def test_rows_written_before_objective_scale_still_report(tmp_path: Path) -> None:
    """A home written before the column existed: the views carry it (null), the report and
    an analyst's query run, and its answers are judged by the sign rule alone."""
    results = tmp_path / "results"
    write_rich_results(results)
    for path in (results / "problems").rglob("*.parquet"):
        old = pq.read_table(path)
        write_table(path, old.drop_columns(["objective_scale"]))
    page = build_report(results)
    assert "reference 0.08" not in svg_of(page, "fig-quality-gap")  # no scale: a ratio
    (row,) = query(results, "SELECT count(objective_scale) AS n FROM problems").to_pylist()
    assert row["n"] == 0


def test_the_run_summary_prints_cost_as_money(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli.running import print_summary
    from pipeline.config_sources import load_settings

    settings = load_settings(tmp_path / "home")
    write_rich_results(settings.results_location.path)
    print_summary(
        settings, RunSummary(run_id="r-one", backend="aer", executor="inline", problems=14)
    )
    shown = capsys.readouterr().out
    assert "$0.000078" in shown and "$0.000001" in shown  # quantum rows, the classical one
    assert not re.search(r"\d\.?\d*e-0\d", shown), shown


@pytest.mark.timeout(60)
def test_a_report_whose_answers_all_match_their_reference_is_drawn(tmp_path: Path) -> None:
    """Every ratio 1 but for a last digit (a real run of small problems): the axis once
    stepped by less than the floats' spacing near 1 and never got there (23 GiB, killed)."""
    at = datetime(2026, 4, 1, tzinfo=UTC)
    rows = [
        ProblemRow(
            problem_id=f"p{i}",
            key=f"k{i}",
            run_id="r",
            batch_id="b",
            kind="maxcut",
            n_variables=4 + i,
            route="quantum",
            solver_path="simulator",
            backend="aer",
            status="completed",
            objective=7.0 * (1 - 2.2e-16 * (i % 2)),
            expected_objective=7.0,
            reference_objective=7.0,
            objective_scale=28.0,
            completed_at=at,
        )
        for i in range(4)
    ]
    rows[3] = near_zero_reference(rows[3], references=True)
    rows[3] = replace(rows[3], objective=0.08, expected_objective=0.08)  # matched: gap 0
    write_table(dataset_path(tmp_path, "problems", at.date(), "b"), to_table(rows, ProblemRow))
    page = build_report(tmp_path)
    ticks = y_ticks(svg_of(page, "fig-quality"))
    assert 1.0 in ticks and len(ticks) <= 12, ticks
    gaps = y_ticks(svg_of(page, "fig-quality-gap"))
    assert min(gaps) == 0 and len(gaps) <= 12, gaps  # a gap axis starts at zero
