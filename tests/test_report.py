"""``qhopper report``: the page's numbers against DuckDB, its figures, and a real browser.

The browser test fills a home through the real CLI (``qhopper submit`` and ``qhopper run``),
writes the report with ``qhopper report`` and loads it in headless Chromium: no console
message (the page has no script, so any is a fault), every figure there, the totals in
the text equal to a DuckDB count. It skips, saying so, where no Chromium is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.report import FIGURE_IDS, build_report, write_report
from pipeline.results import BatchRow, ProblemRow, RunSummary, query, to_table, write_table
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


def write_rich_results(results_dir: Path, references: bool = True, drift: bool = True) -> None:
    """Two runs on two days, two tenants, references, fallbacks, a failure and drift rows."""
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
    write_rich_results(results, references=False, drift=False)
    page = build_report(results)
    assert "no reference objective yet" in page and "No reference objective yet for 26" in page
    assert "no drift data yet" in page
    assert page.count('class="figure empty"') == 2  # quality and drift; the rest are drawn


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
    assert f"{home / 'report.html'}" in done.stdout and "8 figures" in done.stdout
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
