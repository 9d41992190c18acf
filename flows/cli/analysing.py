"""``qhopper report``: one self-contained HTML page of plots and tables over the results."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import ConfigOption, HomeOption, app, clean_failures, err, out, settings_only


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

    settings = settings_only(home, config)
    target = out_file or settings.home / "report.html"
    with clean_failures("report"):
        try:
            info = write_report(
                settings.results_location, target, since.date() if since else None, run_id
            )
        except duckdb.Error as exc:
            err.print(f"[red]report failed: cannot read the results:[/] {exc}", highlight=False)
            raise typer.Exit(1) from exc
        except OSError as exc:
            err.print(f"[red]report failed: cannot write {target}:[/] {exc}", highlight=False)
            raise typer.Exit(1) from exc
    out.print(f"Report: {info.path} ({info.bytes} bytes, {info.figures} figures)", highlight=False)
