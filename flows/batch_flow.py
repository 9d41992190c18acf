"""The Prefect flow of one run: a handful of tasks; the fan-out happens on Dask.

Tasks take and return in-process objects, so they are not cached and their results
are not persisted: Prefect records the run, its states and timings, nothing per problem.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import Task, flow, task
from prefect.cache_policies import NO_CACHE

from flows import steps
from flows.dask_client import dask_client
from pipeline.config import load_settings

FLOW_NAME = "qhopper-run"

P = ParamSpec("P")
R = TypeVar("R")


def _step_task(step: Callable[P, R], name: str) -> Task[P, R]:
    """A task that neither caches nor persists: its inputs are in-process objects."""
    return task(step, name=name, cache_policy=NO_CACHE, persist_result=False)  # type: ignore[call-overload]


recover_task = _step_task(steps.recover, "recover")
collect_task = _step_task(steps.collect, "collect")
plan_task = _step_task(steps.plan, "plan")
compile_task = _step_task(steps.compile_templates, "compile")
execute_task = _step_task(steps.execute, "execute")
finalise_task = _step_task(steps.finalise, "finalise")


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
