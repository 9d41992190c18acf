"""The Prefect flow around the run core: what ``serve`` schedules and a Prefect UI shows.

The flow is the run core and nothing else: one call of ``run_once`` over the embedded
defaults' dependencies. Its argument and return are plain values; nothing per problem goes
through Prefect.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.deps import open_deps
from flows.run import describe, run_once
from pipeline.config_sources import load_settings
from pipeline.results import RunSummary

FLOW_NAME = "qhopper-run"


@flow(name=FLOW_NAME, persist_result=False, log_prints=False)
def qhopper_run(
    home: str,
    config_file: str | None = None,
    backend: str | None = None,
    dask_address: str | None = None,
) -> RunSummary:
    """Drain the queue once: claim, group, route, compile, execute, write, summarise."""
    settings = load_settings(
        Path(home),
        Path(config_file) if config_file else None,
        {"quantum.backend": backend, "dask.address": dask_address},
    )
    with open_deps(settings, backend) as deps:
        summary = run_once(deps)
    get_run_logger().info("%s", describe(summary))
    create_markdown_artifact(
        markdown=_markdown(summary), key="qhopper-run", description=describe(summary)
    )
    return summary


def _markdown(summary: RunSummary) -> str:
    """The run summary as a table in the Prefect UI (the flow run's artifacts)."""
    lines = ["| field | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in asdict(summary).items()]
    return "\n".join(lines)
