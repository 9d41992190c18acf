"""``qhopper requeue``: failed problems back in the queue with a fresh attempt budget."""

from __future__ import annotations

import getpass
import json
from datetime import datetime
from typing import Annotated

import typer

from flows.cli.common import (
    ConfigOption,
    HomeOption,
    JsonOption,
    app,
    clean_failures,
    err,
    out,
    settings_to_read,
)


@app.command()
def requeue(
    problem_ids: Annotated[
        list[str] | None, typer.Argument(help="Failed problems to requeue, by id")
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Every failed problem (narrowed by the filters)")
    ] = False,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
            help="Only problems that failed on or after this UTC date or time",
        ),
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only problems of this kind")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be requeued; change nothing")
    ] = False,
    as_json: JsonOption = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """Put failed problems back in the queue with a fresh attempt budget (recorded in their
    history); their next answer replaces the failed row in the ``problems`` view."""
    from flows.deps import open_intake_to_read
    from pipeline.intake import RequeueSelection

    if bool(problem_ids) == failed:
        err.print("name failed problems by id, or select them with --failed (not both)")
        raise typer.Exit(2)
    selection = RequeueSelection(problem_ids or (), since, kind)
    settings = settings_to_read(home, config, uses=["intake"])  # nothing to requeue in a new one
    with clean_failures("requeue"):
        store = open_intake_to_read(settings)
    try:
        outcome = store.requeue(selection, f"qhopper requeue ({getpass.getuser()})", dry_run)
    finally:
        store.close()
    if as_json:
        body = {"requeued": outcome.requeued, "refused": outcome.refused, "dry_run": dry_run}
        out.print_json(json.dumps(body))
    for problem_id, why in outcome.refused.items():
        err.print(f"{problem_id}: not requeued: {why}", highlight=False)
    if outcome.refused:
        err.print("nothing was requeued")
        raise typer.Exit(2)
    if not as_json:
        verb = "would requeue" if dry_run else "requeued"
        out.print(f"{verb} {len(outcome.requeued)} failed problems", highlight=False)
        for problem_id in outcome.requeued:
            out.print(problem_id, highlight=False, soft_wrap=True)
