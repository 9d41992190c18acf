"""The run core: one function performs a whole run from explicit dependencies.

``run_once(deps)`` recovers half-written batches, claims the queue, plans and routes
batches, compiles templates, dispatches tasks, commits each batch as it finishes, and
returns a typed :class:`~pipeline.results.RunSummary`. The Prefect flow, ``qhopper run``,
``serve``, the tests and the benchmarks all call it; nothing else sequences a run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from flows.deps import RunDeps
from flows.tally import Run, Stage
from pipeline.crash import fault_point
from pipeline.errors import BackendUnavailable, QhopperError, RunTimeout
from pipeline.intake import IntakeStore, LeaseKeeper, new_id
from pipeline.results import RunStatus, RunSummary

if TYPE_CHECKING:
    from pipeline.backends import Backend

log = logging.getLogger("qhopper.run")


def run_once(deps: RunDeps, only: Sequence[str] | None = None) -> RunSummary:
    """One whole run; see the module docstring. Claims are given back however it ends, and
    a run that claimed anything leaves its ``runs/`` row however it ended.

    ``only`` restricts the run to those problem ids (a synchronous solve runs its own
    problem at once, whatever else is queued).
    """
    run = Run(new_id("r"), deps, datetime.now(UTC))
    with run.clock.stage(Stage.RECOVER):
        recovered = deps.results.recover()
    executor, status, error = "none", RunStatus.COMPLETED, None
    try:
        executor = _drain(run, only)
    except BaseException as exc:
        status, error = _ending(exc)
        raise
    finally:
        deps.compute.discard()  # a cluster started early that no claim needed
        if run.tally.problems:
            run.tally.released = _release(deps.intake, run.run_id, status)
        summary = _summary(run, executor, recovered, (status, error))
        _record(deps, summary)
        if deps.settings.canary.backend is not None:
            from flows.canary import release  # a canary deferred on the cluster may start now

            release(run.run_id)
    return summary


def _drain(run: Run, only: Sequence[str] | None) -> str:
    """Claim, plan, execute and commit until nothing claimable is left; the executor used."""
    deps, settings = run.deps, run.deps.settings
    pending = deps.intake.pending() if only is None else 0
    if only is None and not pending:
        return "none"
    deps.compute.prestart(pending)
    from flows.execute import execute_claims, wave_size  # Qiskit, Dask, OR-Tools: for work

    backend = _backend(deps)  # a bad backend fails here, before anything is claimed
    lease = settings.intake.lease_seconds
    with run.clock.stage(Stage.COLLECT):
        wave = wave_size(settings, settings.dask.n_workers)
        claims = deps.intake.claim(run.run_id, wave, lease, only)
        fault_point("claim")
    run.tally.problems = len(claims)
    if not claims:
        return "none"
    deps.progress.note(f"run {run.run_id}: claimed {len(claims)} problems")
    fields = {"event": "claim", "run_id": run.run_id, "problems": len(claims)}
    log.info("run %s claimed %d problems", run.run_id, len(claims), extra={"fields": fields})
    keeper = LeaseKeeper(deps.intake, run.run_id, lease).start()
    try:
        return execute_claims(run, backend, claims, backlog=pending, waves=only is None)
    finally:
        keeper.stop()


def _ending(exc: BaseException) -> tuple[RunStatus, str]:
    """How an exception ends a run: a stop from outside (Ctrl-C, SIGTERM, Prefect's
    cancellation: BaseExceptions that are not errors) or the run's own timeout interrupts
    it; anything else is a failure."""
    why = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, RunTimeout) or not isinstance(exc, Exception):
        return RunStatus.INTERRUPTED, why
    return RunStatus.FAILED, why


def _summary(
    run: Run, executor: str, recovered: int, ending: tuple[RunStatus, str | None]
) -> RunSummary:
    tally, times = run.tally, run.clock.times
    return RunSummary(
        run_id=run.run_id,
        backend=run.deps.backend_spec,
        executor=executor,
        status=ending[0],
        error=ending[1],
        problems=tally.problems,
        completed=tally.completed,
        degraded=tally.degraded,
        failed=tally.failed,
        released=tally.released,
        batches=tally.batches,
        quantum_batches=tally.quantum_batches,
        classical_batches=tally.classical_batches,
        problems_per_batch=tally.problems_per_batch,
        templates_compiled=tally.templates_compiled,
        templates_reused=tally.templates_reused,
        recovered_batches=recovered,
        t_recover_s=times.recover,
        t_collect_s=times.collect,
        t_plan_s=times.plan,
        t_compile_s=times.compile,
        t_cluster_wait_s=times.cluster_wait,
        t_execute_s=times.execute,
        t_total_s=run.clock.total(),
        cost_usd=tally.cost_micro_usd / 1e6,
        started_at=run.started_at,
        completed_at=datetime.now(UTC),
    )


def _record(deps: RunDeps, summary: RunSummary) -> None:
    """The run's ``runs/`` row (when it claimed anything) and its log line. Never raises
    over the error that ended the run: a row that cannot be written is logged."""
    if summary.problems:
        try:
            deps.results.write_run(summary)
        except Exception as exc:
            log.error("run %s: its runs/ row could not be written: %s", summary.run_id, exc)
    log.info("%s", describe(summary), extra={"fields": {"event": "run", **asdict(summary)}})


def _backend(deps: RunDeps) -> Backend:
    """The run's backend; one that cannot be set up (unreachable provider, refused
    credentials) is a BackendUnavailable naming it, whatever its library raised."""
    try:
        return deps.backend()
    except QhopperError:
        raise
    except Exception as exc:
        raise BackendUnavailable(
            f"backend {deps.backend_spec} could not be set up: {type(exc).__name__}: {exc}"
        ) from exc


def describe(summary: RunSummary) -> str:
    """The run in one line, for logs and ``serve``."""
    if not summary.problems:
        return f"run {summary.run_id}: nothing queued ({summary.t_total_s:.2f} s)"
    ended = "" if summary.status is RunStatus.COMPLETED else f" ({summary.status}: {summary.error})"
    return (
        f"run {summary.run_id}{ended}: {summary.problems} problems, {summary.completed} completed, "
        f"{summary.degraded} degraded, {summary.failed} failed, {summary.released} back in "
        f"the queue; {summary.batches} batches on {summary.executor} in {summary.t_total_s:.2f} s"
    )


def _release(intake: IntakeStore, run_id: str, status: RunStatus) -> int:
    """Give back what the run holds and did not finish: queued again at once. The attempt
    counts (a task that raised, a run that failed) unless the run was stopped cleanly: an
    interruption is no failure of the problems'."""
    try:
        released = intake.release(run_id, count_attempt=status is not RunStatus.INTERRUPTED)
    except Exception as exc:  # never hide the error that ended the run; leases expire anyway
        log.error("run %s could not release its claims: %s", run_id, exc)
        return 0
    if released:
        log.warning("run %s handed %d problems back to the queue", run_id, released)
    return released
