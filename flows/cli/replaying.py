"""``qhopper replay`` and ``qhopper drift``: stored answers executed again."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from flows.cli.common import (
    ConfigOption,
    HomeOption,
    JsonOption,
    app,
    clean_failures,
    err,
    print_table,
    settings_to_read,
)

if TYPE_CHECKING:
    from flows.replay import DriftSample


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _shortfall(drawn: DriftSample, asked: int, backend: str) -> str:
    """Why the sample is smaller than asked: only so many stored answers can be replayed."""
    why = f"answered on a backend other than {backend}, with their angles"
    if drawn.stored > drawn.eligible:
        why += f"; {drawn.stored - drawn.eligible} more are too large for it"
    return (
        f"sampled {len(drawn.rows)} of the {asked} asked: only {drawn.eligible} stored "
        f"quantum answers are eligible ({why})"
    )


@app.command()
def replay(
    batch_id: Annotated[str, typer.Argument(help="A batch id from the results (batch_id)")],
    backend: Annotated[
        str | None, typer.Option("--backend", help="Backend spec [default: the batch's own]")
    ] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """Re-execute a stored batch from its stored specs, template, angles and seeds; exit 0
    when every answer is reproduced, 1 with the differing rows."""
    from flows.replay import replay_batch

    settings = settings_to_read(home, config, uses=["intake", "results", "artifacts"])
    with clean_failures("replay"):
        replayed = replay_batch(settings, batch_id, backend)
    differing = [r for r in replayed if not r.reproduced]
    if as_json:
        rows = [asdict(r) | {"reproduced": r.reproduced} for r in replayed]
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        table = Table(
            title=f"Batch {batch_id}: {len(replayed) - len(differing)} of {len(replayed)} reproduced"
        )
        for column in ("problem", "route", "stored", "replayed", "stored E", "replayed E", "same"):
            table.add_column(column)
        for r in replayed:
            table.add_row(
                r.problem_id,
                r.route,
                _number(r.stored_objective),
                _number(r.replayed_objective),
                _number(r.stored_expected),
                _number(r.replayed_expected),
                "yes" if r.reproduced else "NO",
            )
        print_table(table)
    if differing:
        err.print(f"{len(differing)} answer(s) not reproduced", highlight=False)
        raise typer.Exit(1)


@app.command()
def drift(
    backend: Annotated[str, typer.Option("--backend", help="The backend to replay on")],
    sample: Annotated[int, typer.Option("--sample", min=1, help="How many answers")] = 16,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the sample")] = 0,
    as_json: JsonOption = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """Replay a sample of stored quantum answers on another backend at their stored angles;
    writes <results>/drift/ (the report plots it)."""
    from flows.replay import measure_drift
    from pipeline.backends import check_backend_spec

    settings = settings_to_read(home, config, uses=["intake", "results", "artifacts"])
    with clean_failures("drift"):
        check_backend_spec(backend)
        drawn = measure_drift(settings, backend, sample, seed)
    rows = drawn.rows
    if len(rows) < sample:
        err.print(_shortfall(drawn, sample, backend), highlight=False)
    if as_json:
        sys.stdout.write(json.dumps([asdict(r) for r in rows], default=str) + "\n")
        return
    table = Table(title=f"{len(rows)} answers on {backend} (written to drift/)")
    for column in ("problem", "stored E", f"E on {backend}", "difference", "stored best", "best"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.problem_id,
            _number(r.stored_expected),
            _number(r.replay_expected),
            _number(r.difference),
            _number(r.stored_objective),
            _number(r.replay_objective),
        )
    print_table(table)
