"""``qhopper submit``: validate files and enqueue their problems, all or nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import (
    ConfigOption,
    HomeOption,
    JsonOption,
    app,
    clean_failures,
    err,
    errors_found,
    out,
    settings_only,
)
from pipeline.errors import InputRejected


@app.command()
def submit(
    files: Annotated[
        list[Path], typer.Argument(help="JSON, JSON Lines, Gset/rudy or .sparse files")
    ],
    as_json: JsonOption = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Enqueue the valid records, list the rest")
    ] = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """Validate and enqueue problems; prints one id per problem."""
    from pipeline.submit import submit_files

    settings = settings_only(home, config)
    with clean_failures("submit"):
        try:
            report = submit_files(settings, files, skip_invalid)
        except InputRejected as exc:
            for issue in exc.issues:
                err.print(f"[red]invalid:[/] {issue}", highlight=False)
            err.print(f"{errors_found(exc.issues, exc.more_issues)}; nothing was enqueued.")
            raise typer.Exit(2) from exc
    for issue in report.rejected:
        err.print(f"[yellow]skipped:[/] {issue}", highlight=False)
    if report.more_rejected:
        err.print(f"[yellow]skipped:[/] {report.more_rejected} more issue(s), not listed")
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
        f"{created} new, {len(report.submitted) - created} already known, "
        f"{len(report.rejected)} rejected"
    )
    if report.rejected and not report.submitted:
        raise typer.Exit(2)
