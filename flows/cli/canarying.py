"""``qhopper canary``: per candidate backend, whether it agrees with the main one.

Exit codes: 0 every candidate agrees, 1 one disagrees, 3 no verdict yet (a candidate with
fewer than ``canary.min_samples`` samples, or no candidate at all); 2, as everywhere, for
bad usage or configuration.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from flows.cli.common import (
    ConfigOption,
    HomeOption,
    JsonOption,
    app,
    clean_failures,
    out,
    print_table,
    settings_to_read,
)
from pipeline.money import usd

if TYPE_CHECKING:
    from pipeline.canary.verdict import Judgement


@app.command()
def canary(
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since", formats=["%Y-%m-%d"], help="Only canary rows written on or after DATE (UTC)"
        ),
    ] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """Per candidate backend of [canary]: agrees with the main one within canary.tolerance on
    at least canary.min_samples samples, or not, with the numbers. Exit 0 agrees, 1 disagrees,
    3 too few samples."""
    from pipeline.canary.verdict import exit_code, load

    settings = settings_to_read(home, config, uses=["results"])
    with clean_failures("canary"):
        judgements = load(
            settings.results_location,
            settings.canary,
            settings.quantum.backend,
            since.date() if since else None,
        )
    if as_json:
        sys.stdout.write(json.dumps([asdict(j) for j in judgements]) + "\n")
    elif not judgements:
        out.print("no canary rows, and no [canary] backend configured", highlight=False)
    else:
        print_table(_table(judgements))
        for j in judgements:
            out.print(_verdict_line(j), highlight=False)
    raise typer.Exit(exit_code(judgements))


def _verdict_line(j: Judgement) -> str:
    said = f"{j.canary_backend} against {j.main_backend}: {j.verdict}"
    if j.samples < j.min_samples:
        return f"{said} ({j.samples} of the {j.min_samples} samples canary.min_samples asks)"
    compare = "<=" if j.verdict == "AGREES" else ">"
    return (
        f"{said} (mean |difference| {_share(j.mean_abs_difference)} {compare} "
        f"canary.tolerance {_share(j.tolerance)} on {j.samples} samples)"
    )


def _table(judgements: list[Judgement]) -> Table:
    table = Table(title="Canary: the candidate's expectation against the main backend's")
    columns = (
        "candidate",
        "main",
        "samples",
        "failed",
        "mean diff",
        "mean |diff|",
        "max |diff|",
        "same best",
        "s main",
        "s candidate",
        "USD main",
        "USD candidate",
        "verdict",
    )
    for column in columns:
        table.add_column(column)
    for j in judgements:
        table.add_row(
            j.canary_backend,
            j.main_backend,
            str(j.samples),
            str(j.failed),
            _share(j.mean_difference),
            _share(j.mean_abs_difference),
            _share(j.max_abs_difference),
            _share(j.best_sample_agreement),
            _number(j.main_seconds),
            _number(j.canary_seconds),
            usd(j.main_cost_usd),
            usd(j.canary_cost_usd),
            str(j.verdict),
        )
    return table


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
