"""``qhopper status``, ``results`` and ``config``: look at the queue, the answers, the settings."""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from flows.cli.common import (
    ConfigOption,
    HomeOption,
    JsonOption,
    app,
    clean_failures,
    err,
    load_checked,
    out,
    print_table,
    settings_to_read,
)
from pipeline.config_sources import ENV_OVERRIDES, flatten


@app.command()
def status(
    problem_id: Annotated[
        str | None, typer.Argument(help="A problem id from 'qhopper submit'")
    ] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """Counts per state, or one problem's state, route, history and result location."""
    from flows.deps import open_intake_to_read

    settings = settings_to_read(home, config, uses=["intake"])
    with clean_failures("status"):
        store = open_intake_to_read(settings)
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
    names = ("id", "key", "kind", "n_variables", "state", "attempts", "route", "solver_path")
    shown = {k: found[k] for k in (*names, "batch_id", "result_path", "last_error")}
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
    as_json: JsonOption = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """Query the result Parquet with DuckDB; a table, --csv or --json."""
    import duckdb

    from pipeline.results import query

    settings = settings_to_read(home, config, uses=["results"])
    try:
        table = query(settings.results_location, sql)
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
        print_table(shown)


@app.command("config")
def show_config(
    as_json: JsonOption = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """The effective settings and where each came from (default, file, environment, option)."""
    loaded = load_checked(home, config)  # creates nothing: the home may not be made yet
    values = flatten(loaded.settings)
    rows = [
        {"setting": name, "value": value, "source": loaded.sources.get(name, "default")}
        for name, value in values.items()
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    where = loaded.config_file or "none found"
    table = Table(title=f"Effective settings (configuration file: {where})")
    for column in ("setting", "value", "source"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["setting"], str(row["value"]), row["source"])
    print_table(table)
    variables = ", ".join(["QHOPPER_HOME", "QHOPPER_CONFIG", *ENV_OVERRIDES])
    out.print(f"Environment variables read: {variables}", highlight=False)
