"""The Prefect flow of one run: a handful of tasks; the fan-out happens on Dask.

Tasks take and return in-process objects, so they are not cached and their results
are not persisted: Prefect records the run, its states and timings, nothing per problem.
Arguments go in under ``quote`` so Prefect does not walk a thousand problems looking for
upstream futures (it cost seconds per task at 1,000 problems).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import Task, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from flows import steps
from flows.dask_client import BackgroundClient
from pipeline.config import load_settings

FLOW_NAME = "qhopper-run"

P = ParamSpec("P")
R = TypeVar("R")


def _step_task(step: Callable[P, R], name: str) -> Task[P, R]:
    """A task that neither caches nor persists: its inputs are in-process objects."""
    return task(step, name=name, cache_policy=NO_CACHE, persist_result=False)  # type: ignore[call-overload]


def _run(step_task: Task[..., R], *args: object) -> R:
    """Call a task with every argument quoted, so Prefect does not walk our objects."""
    return step_task(*(quote(arg) for arg in args))


recover_task = _step_task(steps.recover, "recover")
collect_task = _step_task(steps.collect, "collect")
plan_task = _step_task(steps.plan, "plan")
compile_task = _step_task(steps.compile_templates, "route-and-compile")
execute_task = _step_task(steps.execute, "execute")
finalise_task = _step_task(steps.finalise, "finalise")


@flow(name=FLOW_NAME, persist_result=False, log_prints=False)
def batch_run(
    home: str,
    config_file: str | None = None,
    backend: str | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Drain the queue once: claim, group, route, compile, execute, write, summarise.

    The Dask cluster starts as soon as there is work, beside planning and compiling (the
    summary's ``t_cluster_wait_s`` is what its start still cost after them);
    ``t_total_s`` ends when the last answer is written, before the cluster shuts down.
    """
    if gc.get_freeze_count() == 0:
        # Start-up leaves half a million long-lived objects (Prefect, Qiskit, Dask); a full
        # collection walks them in 0.2-0.3 s, and one used to land inside the run. Frozen
        # once per process, they are out of the collector's way; what runs allocate is not.
        gc.freeze()
    started = time.perf_counter()
    settings = load_settings(Path(home), Path(config_file) if config_file else None)
    ctx = steps.RunContext.open(settings, backend, dask_address)
    dask: BackgroundClient | None = None
    routed: steps.RoutedBatches | None = None
    try:
        recovered = _run(recover_task, ctx)
        claimed = _run(collect_task, ctx)
        if claimed:
            dask = BackgroundClient(
                ctx.dask_address, settings.dask.n_workers, settings.dask.start_timeout_s
            )
        batches, exhausted = _run(plan_task, ctx, claimed)
        if dask is not None and (batches or exhausted):
            routed = _run(compile_task, ctx, batches)
            waited_from = time.perf_counter()
            client = dask.client()
            ctx.timings["cluster_wait"] = time.perf_counter() - waited_from
            _run(execute_task, ctx, routed, exhausted, client)
        return _run(finalise_task, ctx, recovered, time.perf_counter() - started)
    finally:
        try:
            if routed is not None:
                routed.close()  # a run that failed before executing stops compiling too
            if dask is not None:
                dask.close()
        finally:
            ctx.close()
