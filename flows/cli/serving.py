"""``qhopper serve``: the run on Prefect's interval schedule until stopped."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from flows.cli.common import (
    BackendOption,
    ConfigOption,
    DaskOption,
    HomeOption,
    app,
    clean_failures,
    err,
    settings_for,
)
from pipeline.timebounds import duration_issue


def parse_interval(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not an interval like 30s, 5m, 1h")
    value = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    issue = duration_issue(value)
    if issue is not None:
        raise typer.BadParameter(f"the interval {issue}")
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
    """Run the flow at once and then on an interval schedule (Prefect) until stopped."""
    seconds = parse_interval(interval)
    loaded = settings_for(
        home, config, **{"quantum.backend": backend, "dask.address": dask_address}
    )
    from flows.serve import serve_forever

    with clean_failures("serve"):
        serve_forever(loaded.settings, loaded.config_file, seconds, backend, err)
