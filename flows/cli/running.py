"""``qhopper run`` and ``qhopper demo``: one run now, and its summary.

A one-off run calls the run core directly: Prefect's temporary in-process server costs
7-13 s to start and adds nothing a single run needs. When a Prefect server is configured
(``PREFECT_API_URL``), the run goes through the Prefect flow instead, so it shows in that
server's UI like the runs ``serve`` schedules.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.cli.common import (
    BackendOption,
    ConfigOption,
    DaskOption,
    HomeOption,
    JsonOption,
    app,
    clean_failures,
    err,
    out,
    settings_for,
)
from flows.progress import Eta, LogProgress, ProgressSink
from flows.signals import stop_on_signals
from pipeline.config import Settings

if TYPE_CHECKING:
    from pipeline.results import RunSummary

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "data" / "samples"


class _RichProgress:
    """Progress bars on a terminal, each with its ETA."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.current: Any = None
        self.eta = Eta(0, None)
        self.done = 0

    def stage(self, name: str, total: int, estimate_s: float | None = None) -> None:
        self.eta, self.done = Eta(total, estimate_s), 0
        self.current = self.progress.add_task(name, total=total, eta=self.eta.text(0))

    def advance(self, amount: int) -> None:
        if self.current is not None:
            self.done += amount
            self.progress.update(self.current, advance=amount, eta=self.eta.text(self.done))

    def note(self, message: str) -> None:
        self.progress.console.print(message, highlight=False)


def run_now(settings: Settings, config: Path | None, progress: ProgressSink) -> RunSummary:
    """One run: through the Prefect flow when a Prefect server is configured, else direct."""
    if os.environ.get("PREFECT_API_URL"):
        from flows.prefect_env import configure_prefect

        configure_prefect(settings.home)
        from flows.flow import qhopper_run

        return qhopper_run(
            home=str(settings.home),
            config_file=str(config) if config else None,
            backend=settings.quantum.backend,
            dask_address=settings.dask.address,
        )
    from flows.deps import open_deps
    from flows.run import run_once

    with open_deps(settings, progress=progress) as deps:
        return run_once(deps)


def _run_with_progress(settings: Settings, config: Path | None) -> RunSummary:
    if not err.is_terminal:
        return run_now(settings, config, LogProgress(err.file))
    bars = Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
        console=err,
        transient=False,
    )
    with bars:
        return run_now(settings, config, _RichProgress(bars))


@app.command()
def run(
    backend: BackendOption = None,
    home: HomeOption = None,
    config: ConfigOption = None,
    dask_address: DaskOption = None,
    as_json: JsonOption = False,
) -> None:
    """One run now: drain, group, route, compile, execute, write; prints a summary."""
    loaded = settings_for(
        home, config, **{"quantum.backend": backend, "dask.address": dask_address}
    )
    stop_on_signals()
    with clean_failures("run"), _interruptible():
        summary = _run_with_progress(loaded.settings, loaded.config_file)
    if as_json:
        out.print_json(json.dumps(asdict(summary), default=str))
    else:
        print_summary(loaded.settings, summary)


@app.command()
def demo(
    home: HomeOption = None,
    config: ConfigOption = None,
    dask_address: DaskOption = None,
) -> None:
    """Submit the bundled samples and run once, on the embedded defaults."""
    from pipeline.submit import submit_files

    loaded = settings_for(home, config, **{"dask.address": dask_address})
    samples = sorted(p for p in SAMPLES_DIR.iterdir() if p.is_file() and p.name != "README.md")
    with clean_failures("demo"):
        report = submit_files(loaded.settings, samples)
        created = sum(s.outcome.created for s in report.submitted)
        err.print(
            f"Submitted {len(report.submitted)} sample problems from {SAMPLES_DIR} ({created} new)."
        )
        summary = _run_with_progress(loaded.settings, loaded.config_file)
    if summary.problems:
        print_summary(loaded.settings, summary)
    else:
        _print_answered_before(loaded.settings, [s.outcome.id for s in report.submitted])


def _print_answered_before(settings: Settings, ids: list[str]) -> None:
    """A second demo on the same home: the samples were answered already (submitting the same
    content again is idempotent), so show their stored answers rather than nothing, and
    computing them again under fresh keys would only pile up copies."""
    title = "Nothing new to run: the samples' answers from earlier runs"
    out.print(_answers_table(settings, "list_contains(?, problem_id)", [ids], title))
    out.print(
        f"Results: {settings.results_location}/problems. To compute them again, use a fresh "
        "home: qhopper demo --home DIR",
        highlight=False,
    )


@contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C or SIGTERM: one line and exit 130, no traceback (the run already gave back
    what it held and wrote its ``runs/`` row)."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(
            "run interrupted: what it held went back to the queue, the attempt not counted",
            highlight=False,
        )
        raise typer.Exit(130) from None


def print_summary(settings: Settings, summary: RunSummary) -> None:
    if not summary.problems:
        out.print("Nothing queued: no problems to run.")
        return
    title = f"Run {summary.run_id}: {summary.problems} problems on {summary.executor}"
    out.print(_answers_table(settings, "run_id = ?", [summary.run_id], title))
    batches = Table(title="Batches and templates")
    names = (
        "batches",
        "quantum_batches",
        "classical_batches",
        "templates_compiled",
        "templates_reused",
    )
    for name in names:
        batches.add_column(name.replace("_", " "), justify="right")
    batches.add_row(*(str(getattr(summary, name)) for name in names))
    out.print(batches)
    stages = Table(title="Time per stage (s)")
    stage_names = ("recover", "collect", "plan", "compile", "cluster_wait", "execute", "total")
    for name in stage_names:
        stages.add_column(name.replace("_", " "), justify="right")
    stages.add_row(*(f"{getattr(summary, f't_{name}_s'):.2f}" for name in stage_names))
    out.print(stages)
    if summary.released:
        out.print(f"{summary.released} problems went back to the queue for another attempt.")
    _print_large_gaps(settings, summary.run_id)
    out.print(
        f"Results: {settings.results_location}/problems (also batches/ and runs/)",
        highlight=False,
    )
    out.print('Query them with: qhopper results --sql "SELECT ... FROM problems"', highlight=False)


def _answers_table(settings: Settings, where: str, params: list[Any], title: str) -> Table:
    """Answers by route, solver path and status, with time and cost, of the rows ``where``."""
    from pipeline.money import usd
    from pipeline.results import query

    rows = query(
        settings.results_location,
        "SELECT route, solver_path, status, count(*) AS problems, "
        "round(avg(t_execute_s), 3) AS avg_execute_s, sum(cost_usd) AS cost_usd "
        f"FROM problems WHERE {where} GROUP BY ALL ORDER BY ALL",
        params,
    ).to_pylist()
    table = Table(title=title)
    numbers = ("problems", "avg_execute_s", "cost_usd")
    for column in ("route", "solver_path", "status", *numbers):
        table.add_column(column, justify="right" if column in numbers else "left")
    for row in rows:
        row["cost_usd"] = usd(row["cost_usd"] or 0.0)
        table.add_row(*(str(row[c]) if row[c] is not None else "-" for c in table_columns(table)))
    return table


LARGE_GAP = 0.01  # 1 % between an unproven answer and the classical solver's bound


def _print_large_gaps(settings: Settings, run_id: str) -> None:
    """Answers that may be far from optimal: their gap to the proven bound is large."""
    from pipeline.results import query

    far = query(
        settings.results_location,
        "SELECT problem_id, kind, n_variables, objective, bound, gap FROM problems "
        "WHERE run_id = ? AND gap > ? ORDER BY gap DESC LIMIT 10",
        [run_id, LARGE_GAP],
    ).to_pylist()
    if not far:
        return
    table = Table(title=f"Answers more than {LARGE_GAP:.0%} from their bound (not proven)")
    for column in ("problem_id", "kind", "n_variables", "objective", "bound", "gap"):
        table.add_column(column, justify="left" if column in ("problem_id", "kind") else "right")
    for row in far:
        table.add_row(
            row["problem_id"],
            row["kind"],
            str(row["n_variables"]),
            f"{row['objective']:.6g}",
            f"{row['bound']:.6g}",
            f"{row['gap']:.2%}",
        )
    out.print(table)


def table_columns(table: Table) -> list[str]:
    return [str(column.header) for column in table.columns]
