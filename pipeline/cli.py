"""The ``qhopper`` command line. Exit codes: 0 ok, 2 bad input or usage, 1 failure."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError, InputRejected, QhopperError

app = typer.Typer(
    name="qhopper",
    help="Batch aggregation pipeline for hybrid quantum-classical optimization.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "samples"

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        envvar="QHOPPER_HOME",
        help="Queue database, artifacts and results [default: ./.qhopper]",
    ),
]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="A qhopper.toml with settings")]
DaskOption = Annotated[
    str | None,
    typer.Option(
        "--dask-address", help="Dask scheduler, e.g. tcp://host:8786 [default: a LocalCluster]"
    ),
]
BackendOption = Annotated[
    str | None, typer.Option("--backend", help="Quantum backend spec [default: aer]")
]


def _settings(home: Path | None, config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(home, config, overrides)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from exc


# --- submit -------------------------------------------------------------------------------
@app.command()
def submit(
    files: Annotated[
        list[Path], typer.Argument(help="JSON, JSON Lines, Gset/rudy or .sparse files")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable output")] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Enqueue the valid records, list the rest")
    ] = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """Validate and enqueue problems; prints one id per problem."""
    from pipeline.submit import submit_files

    settings = _settings(home, config)
    try:
        report = submit_files(settings, files, skip_invalid)
    except InputRejected as exc:
        for issue in exc.issues:
            err.print(f"[red]invalid:[/] {issue}", highlight=False)
        err.print(f"{len(exc.issues)} problem(s) found; nothing was enqueued.")
        raise typer.Exit(2) from exc
    for issue in report.rejected:
        err.print(f"[yellow]skipped:[/] {issue}", highlight=False)
    if as_json:
        out.print_json(
            json.dumps(
                [
                    {
                        "id": s.outcome.id,
                        "key": s.outcome.key,
                        "created": s.outcome.created,
                        "file": s.record.file,
                        "record": s.record.record,
                    }
                    for s in report.submitted
                ]
            )
        )
    else:
        for item in report.submitted:
            out.print(item.outcome.id, highlight=False)
    created = sum(s.outcome.created for s in report.submitted)
    err.print(
        f"{created} new, {len(report.submitted) - created} already known, {len(report.rejected)} rejected"
    )
    if report.rejected and not report.submitted:
        raise typer.Exit(2)


# --- run ----------------------------------------------------------------------------------
class _RichProgress:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.current: Any = None

    def stage(self, name: str, total: int) -> None:
        self.current = self.progress.add_task(name, total=total)

    def advance(self, amount: int) -> None:
        if self.current is not None:
            self.progress.advance(self.current, amount)


def _load_transpiler_plugins() -> None:
    from pipeline.engine.templates import load_transpiler_plugins

    load_transpiler_plugins()


def _run_once(
    settings: Settings, config: Path | None, backend: str | None, dask_address: str | None
) -> dict[str, Any]:
    from flows.prefect_env import configure_prefect

    # Qiskit's transpiler plugins load while Prefect starts, not inside the run.
    warming = threading.Thread(target=_load_transpiler_plugins, name="qhopper-warm", daemon=True)
    warming.start()
    configure_prefect(settings.home)
    from flows.batch_flow import batch_run
    from flows.progress import set_sink

    if os.environ.get("PREFECT_API_URL"):
        # No temporary server to start behind which the load can hide: finish it as
        # start-up, or it takes the GIL from the run's first steps.
        warming.join()

    progress = Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )
    set_sink(_RichProgress(progress))
    try:
        with progress:
            return batch_run(
                home=str(settings.home),
                config_file=str(config) if config else None,
                backend=backend,
                dask_address=dask_address,
            )
    finally:
        set_sink(None)


@app.command()
def run(
    backend: BackendOption = None,
    home: HomeOption = None,
    config: ConfigOption = None,
    dask_address: DaskOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON")] = False,
) -> None:
    """One flow run now: drain, group, route, compile, execute, write; prints a summary."""
    settings = _settings(home, config, **{"quantum.backend": backend, "dask.address": dask_address})
    try:
        summary = _run_once(settings, config, backend, dask_address)
    except QhopperError as exc:
        err.print(f"[red]run failed:[/] {exc}")
        raise typer.Exit(1) from exc
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        _print_summary(settings, summary)


def _print_summary(settings: Settings, summary: dict[str, Any]) -> None:
    from pipeline.results import query

    if not summary["problems"]:
        out.print("Nothing queued: no problems to run.")
        return
    rows = query(
        settings.results_dir,
        (
            "SELECT route, solver_path, status, count(*) AS problems, "
            "round(avg(t_execute_s), 3) AS avg_execute_s, round(sum(cost_usd), 6) AS cost_usd "
            f"FROM problems WHERE run_id = '{summary['run_id']}' GROUP BY ALL ORDER BY ALL"
        ),
    ).to_pylist()
    table = Table(title=f"Run {summary['run_id']}: {summary['problems']} problems")
    for column in ("route", "solver_path", "status", "problems", "avg_execute_s", "cost_usd"):
        table.add_column(
            column,
            justify="right" if column in {"problems", "avg_execute_s", "cost_usd"} else "left",
        )
    for row in rows:
        table.add_row(*(str(row[c]) if row[c] is not None else "-" for c in row))
    out.print(table)
    batches = Table(title="Batches and templates")
    for column in ("batches", "quantum", "classical", "templates compiled", "templates reused"):
        batches.add_column(column, justify="right")
    batches.add_row(
        *(
            str(summary[k])
            for k in (
                "batches",
                "quantum_batches",
                "classical_batches",
                "templates_compiled",
                "templates_reused",
            )
        )
    )
    out.print(batches)
    stages = Table(title="Time per stage (s)")
    names = ("recover", "collect", "plan", "compile", "cluster_wait", "execute", "total")
    for name in names:
        stages.add_column(name.replace("_", " "), justify="right")
    stages.add_row(*(f"{summary[f't_{name}_s']:.2f}" for name in names))
    out.print(stages)
    out.print(
        f"Results: {settings.results_dir.resolve()}/problems (also batches/ and runs/)",
        highlight=False,
    )
    out.print('Query them with: qhopper results --sql "SELECT ... FROM problems"', highlight=False)


# --- serve --------------------------------------------------------------------------------
def parse_interval(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not an interval like 30s, 5m, 1h")
    value = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if value <= 0:
        raise typer.BadParameter("the interval must be positive")
    return value


@app.command()
def serve(
    interval: Annotated[
        str, typer.Option("--interval", help="How often to run: 30s, 5m, 1h")
    ] = "5m",
    backend: BackendOption = None,
    home: HomeOption = None,
    config: ConfigOption = None,
    dask_address: DaskOption = None,
) -> None:
    """Run the flow on an interval schedule (Prefect) until stopped."""
    seconds = parse_interval(interval)
    settings = _settings(home, config, **{"quantum.backend": backend, "dask.address": dask_address})
    from flows.serve import serve_forever

    serve_forever(settings, config, seconds, backend, dask_address, err)


# --- status and results -------------------------------------------------------------------
@app.command()
def status(
    problem_id: Annotated[
        str | None, typer.Argument(help="A problem id from 'qhopper submit'")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """Counts per state, or one problem's state, route, history and result location."""
    from pipeline.intake import IntakeStore

    settings = _settings(home, config)
    store = IntakeStore.open(settings.database_url)
    try:
        if problem_id is None:
            counts = store.counts()
            if as_json:
                out.print_json(json.dumps(counts))
                return
            table = Table(title="Problems by state")
            table.add_column("state")
            table.add_column("problems", justify="right")
            for state, count in counts.items():
                table.add_row(state, str(count))
            out.print(table)
            return
        found = store.get(problem_id)
    finally:
        store.close()
    if found is None:
        err.print(f"no problem with id {problem_id!r}")
        raise typer.Exit(2)
    shown = {
        k: found[k]
        for k in (
            "id",
            "key",
            "kind",
            "n_variables",
            "state",
            "attempts",
            "route",
            "solver_path",
            "batch_id",
            "result_path",
            "last_error",
        )
    }
    shown["history"] = [
        f"{e['at'].isoformat()} {e['state']} {e['detail'] or ''}".strip() for e in found["events"]
    ]
    if as_json:
        out.print_json(json.dumps(shown, default=str))
        return
    for name, value in shown.items():
        if name == "history":
            out.print("history:")
            for line in value:
                out.print(f"  {line}", highlight=False)
        else:
            out.print(f"{name}: {value if value is not None else '-'}", highlight=False)


@app.command()
def results(
    sql: Annotated[
        str, typer.Option("--sql", help="DuckDB SQL over the views problems, batches, runs")
    ] = (
        "SELECT problem_id, kind, n_variables, route, solver_path, status, objective, solution "
        "FROM problems ORDER BY completed_at, problem_id"
    ),
    as_csv: Annotated[bool, typer.Option("--csv")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """Query the result Parquet with DuckDB; a table, --csv or --json."""
    import duckdb

    from pipeline.results import query

    settings = _settings(home, config)
    try:
        table = query(settings.results_dir, sql)
    except duckdb.Error as exc:
        err.print(f"[red]query failed:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    rows = table.to_pylist()
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
    elif as_csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=table.column_names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())
    else:
        shown = Table(title=f"{len(rows)} row(s)")
        for name in table.column_names:
            shown.add_column(name)
        for row in rows:
            shown.add_row(*("-" if v is None else str(v) for v in row.values()))
        out.print(shown)


# --- demo ---------------------------------------------------------------------------------
@app.command()
def demo(
    home: HomeOption = None,
    config: ConfigOption = None,
    dask_address: DaskOption = None,
) -> None:
    """Submit the bundled samples and run once, on the embedded defaults."""
    from pipeline.submit import submit_files

    settings = _settings(home, config)
    samples = sorted(p for p in SAMPLES_DIR.iterdir() if p.is_file() and p.name != "README.md")
    report = submit_files(settings, samples)
    created = sum(s.outcome.created for s in report.submitted)
    err.print(
        f"Submitted {len(report.submitted)} sample problems from {SAMPLES_DIR} ({created} new)."
    )
    try:
        summary = _run_once(settings, config, None, dask_address)
    except QhopperError as exc:
        err.print(f"[red]demo run failed:[/] {exc}")
        raise typer.Exit(1) from exc
    _print_summary(settings, summary)


def main() -> None:  # pragma: no cover - console entry point
    logging.basicConfig(level=logging.WARNING)
    app()
