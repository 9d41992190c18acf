"""``qhopper serve``: the run on Prefect's interval schedule until stopped."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.common import (
    BackendOption,
    ConfigOption,
    DaskOption,
    HomeOption,
    app,
    clean_failures,
    duration_option,
    err,
    settings_for,
)


def parse_interval(text: str) -> float:
    """``--interval``: seconds, minutes, hours or days."""
    return duration_option(text, ("s", "m", "h", "d"), "interval", "an interval like 30s, 5m, 1h")


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
