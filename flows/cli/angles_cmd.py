"""``qhopper angles``: what the angle library learned, class by class."""

from __future__ import annotations

import json
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

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.qaoa.angle_store import AngleEntry


@app.command()
def angles(
    class_key: Annotated[
        str | None,
        typer.Argument(help="One class, e.g. maxcut/q12/d3^12/p2/noh [default: every class]"),
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Every kept entry, not only each class's best")
    ] = False,
    as_json: JsonOption = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """The angle library: each class's best angles, the expectation ratio they reached."""
    from pipeline.qaoa.angle_store import describe

    entries = _entries(settings_to_read(home, config, uses=["intake"]), class_key)
    if not show_all:
        entries = _best_per_class(entries)
    if as_json:
        out.print_json(json.dumps([describe(e) for e in entries]))
        return
    if not entries:
        out.print("the angle library is empty" + (f" for {class_key}" if class_key else ""))
        return
    print_table(_table(entries, show_all))
    outdated = sum(entry.outdated for entry in entries)
    if outdated:
        out.print(
            f"{outdated} entr{'y' if outdated == 1 else 'ies'} of a constrained kind recorded "
            "before its expectation was taken over feasible outcomes only: ratio not shown "
            "(its angles still serve); the class's next batch records one."
        )


def _entries(settings: Settings, class_key: str | None) -> list[AngleEntry]:
    """The library's entries (of one class, or all), best first within each class."""
    from flows.deps import open_intake_to_read
    from pipeline.qaoa.angle_store import AngleLibrary

    with clean_failures("angles"):
        store = open_intake_to_read(settings)
    try:
        return AngleLibrary(store.engine).entries(class_key)
    finally:
        store.close()


def _best_per_class(entries: list[AngleEntry]) -> list[AngleEntry]:
    best: dict[str, AngleEntry] = {}  # entries come best first within each class
    for entry in entries:
        best.setdefault(entry.class_key, entry)
    return list(best.values())


COLUMNS = ("class", "gammas", "betas", "ratio", "problems", "evals/problem", "from", "recorded")


def _table(entries: list[AngleEntry], show_all: bool) -> Table:
    table = Table(title="Angle library" + (" (every entry)" if show_all else " (best per class)"))
    for column in COLUMNS:
        table.add_column(column)
    for entry in entries:
        table.add_row(
            entry.class_key,
            " ".join(f"{g:.4f}" for g in entry.gammas),
            " ".join(f"{b:.4f}" for b in entry.betas),
            "-" if entry.ratio is None else f"{entry.ratio:.4f}",
            str(entry.problems),
            f"{entry.evaluations:.1f}",
            entry.started_from,
            entry.created_at.isoformat(timespec="seconds"),
        )
    return table
