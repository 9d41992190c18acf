"""``qhopper report``: one self-contained HTML page of plots and tables over the results."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flows.cli.common import (
    ConfigOption,
    HomeOption,
    app,
    clean_failures,
    err,
    fail,
    out,
    settings_to_read,
)

if TYPE_CHECKING:
    from pipeline.results import ResultsLocation


@app.command()
def report(
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write the page [default: <home>/report.html]"),
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since", formats=["%Y-%m-%d"], help="Only answers completed on or after DATE (UTC)"
        ),
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only the answers of one run")] = None,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """An HTML report with plots: stage latencies, routes, fallbacks, cost, quality, drift."""
    import duckdb

    from pipeline.report import write_report

    uses = ["results"] if out_file else ["results", "report"]
    settings = settings_to_read(home, config, uses=uses)
    target = out_file or settings.home / "report.html"
    day = since.date() if since else None
    with clean_failures("report"):
        try:
            if (day or run_id) and not _selects_answers(settings.results_location, day, run_id):
                fail(f"{_selection(day, run_id)} selects no answer; {target} left as it was", 2)
            info = write_report(settings.results_location, target, day, run_id)
        except duckdb.Error as exc:
            err.print(f"[red]report failed: cannot read the results:[/] {exc}", highlight=False)
            raise typer.Exit(1) from exc
        except OSError as exc:
            err.print(f"[red]report failed: cannot write {target}:[/] {exc}", highlight=False)
            raise typer.Exit(1) from exc
    out.print(f"Report: {info.path} ({info.bytes} bytes, {info.figures} figures)", highlight=False)


def _selects_answers(location: ResultsLocation, since: date | None, run_id: str | None) -> bool:
    """Whether any answer passes the filters, as the report applies them: a misspelt run id
    must not overwrite a good report with an empty one."""
    from pipeline.results import query

    start = f"{since.isoformat()} 00:00:00+00" if since else None
    found = query(
        location,
        "SELECT count(*) AS n FROM problems WHERE (CAST(? AS VARCHAR) IS NULL OR run_id = ?) "
        "AND (CAST(? AS VARCHAR) IS NULL "
        "OR coalesce(completed_at, submitted_at) >= CAST(? AS TIMESTAMPTZ))",
        [run_id, run_id, start, start],
    ).to_pylist()
    return bool(found[0]["n"])


def _selection(since: date | None, run_id: str | None) -> str:
    parts = ([f"--run {run_id}"] if run_id else []) + ([f"--since {since}"] if since else [])
    return " ".join(parts)
