"""The Prefect flow of one run: a handful of tasks; the fan-out happens on Dask.

Tasks take and return in-process objects, so they are not cached and their results
are not persisted: Prefect records the run, its states and timings, nothing per problem.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import steps
from flows.dask_client import dask_client
from pipeline.config import load_settings

FLOW_NAME = "qhopper-run"

recover_task = task(steps.recover, name="recover", cache_policy=NO_CACHE, persist_result=False)
collect_task = task(steps.collect, name="collect", cache_policy=NO_CACHE, persist_result=False)
plan_task = task(steps.plan, name="plan", cache_policy=NO_CACHE, persist_result=False)
compile_task = task(
    steps.compile_templates, name="compile", cache_policy=NO_CACHE, persist_result=False
)
execute_task = task(steps.execute, name="execute", cache_policy=NO_CACHE, persist_result=False)
finalise_task = task(steps.finalise, name="finalise", cache_policy=NO_CACHE, persist_result=False)


@flow(name=FLOW_NAME, persist_result=False, log_prints=False)
def batch_run(
    home: str,
    config_file: str | None = None,
    backend: str | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Drain the queue once: claim, group, route, compile, execute, write, summarise."""
    started = time.perf_counter()
    settings = load_settings(Path(home), Path(config_file) if config_file else None)
    ctx = steps.RunContext.open(settings, backend, dask_address)
    try:
        recovered = recover_task(ctx)
        claimed = collect_task(ctx)
        batches, exhausted = plan_task(ctx, claimed)
        if batches or exhausted:
            compiled = compile_task(ctx, batches)
            with dask_client(ctx.dask_address, settings.dask.n_workers) as client:
                execute_task(ctx, compiled, exhausted, client)
        return finalise_task(ctx, recovered, time.perf_counter() - started)
    finally:
        ctx.close()
