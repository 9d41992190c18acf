"""The run core: one function performs a whole run from explicit dependencies.

``run_once(deps)`` recovers half-written batches, claims the queue, plans and routes
batches, compiles templates, dispatches tasks, commits each batch as it finishes, and
returns a typed :class:`~pipeline.results.RunSummary`. The Prefect flow, ``qhopper run``,
``serve``, the tests and the benchmarks all call it; nothing else sequences a run.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from batching import new_batch_id, plan_batches, route_batches, run_work_seconds
from batching.records import PlannedProblem
from flows.compute import Compute, ComputeChoice, LocalClusterCompute
from flows.dispatch import Dispatcher, TemplateCompiler
from flows.progress import ProgressSink, silent
from flows.rows import RowContext, batch_row, batch_rows, exhausted_batch_row, exhausted_rows
from pipeline.backends import Backend, get_backend
from pipeline.config import Settings
from pipeline.crash import fault_point
from pipeline.engine.templates import TemplateStore, artifact_key
from pipeline.formulation import formulate
from pipeline.intake import COMPLETED, DEGRADED, FAILED, ClaimedProblem, IntakeStore, LeaseKeeper, new_id
from pipeline.model import spec_from_record
from pipeline.results import ProblemRow, ResultStore, RunSummary

log = logging.getLogger("qhopper.run")


@dataclass(frozen=True)
class RunDeps:
    """Everything a run touches, made explicit: tests and entry points build their own."""

    settings: Settings
    intake: IntakeStore
    results: ResultStore
    backend_spec: str
    backend: Callable[[], Backend]  # built only once there is work
    compute: ComputeChoice
    templates: TemplateStore
    progress: ProgressSink = silent


@contextmanager
def open_deps(
    settings: Settings, backend_spec: str | None = None, progress: ProgressSink = silent
) -> Iterator[RunDeps]:
    """The embedded defaults' dependencies for ``settings``; the home is created if missing."""
    settings.home.mkdir(parents=True, exist_ok=True)
    spec = backend_spec or settings.quantum.backend
    intake = IntakeStore.open(settings.database_url)
    try:
        yield RunDeps(
            settings=settings,
            intake=intake,
            results=ResultStore(settings.results_dir, intake),
            backend_spec=spec,
            backend=partial(get_backend, spec, settings.quantum.max_qubits),
            compute=ComputeChoice(
                settings.dask.address,
                settings.dask.n_workers,
                settings.dask.inline_below_s,
                settings.dask.start_timeout_s,
            ),
            templates=TemplateStore(settings.artifacts_dir),
            progress=progress,
        )
    finally:
        intake.close()


def run_once(deps: RunDeps) -> RunSummary:
    """One whole run; see the module docstring. Claims are given back however it ends."""
    run_id = new_id("r")
    clock = _Clock()
    started_at = datetime.now(UTC)
    settings = deps.settings
    with clock.stage("recover"):
        recovered = deps.results.recover()
    counts: Counter[str] = Counter()
    executor = "none"
    if deps.intake.pending():
        backend = deps.backend()  # a bad backend fails here, before anything is claimed
        with clock.stage("collect"):
            lease = settings.intake.lease_seconds
            claims = deps.intake.claim(run_id, settings.intake.claim_limit, lease)
            fault_point("claim")
        counts["problems"] = len(claims)
        if claims:
            deps.progress.note(f"run {run_id}: claimed {len(claims)} problems")
            keeper = LeaseKeeper(deps.intake, run_id, lease).start()
            try:
                executor = _work(deps, run_id, backend, claims, clock, counts, started_at)
            finally:
                keeper.stop()
                counts["released"] = _release(deps.intake, run_id)
    summary = RunSummary(
        run_id=run_id,
        backend=deps.backend_spec,
        executor=executor,
        problems=counts["problems"],
        completed=counts[COMPLETED],
        degraded=counts[DEGRADED],
        failed=counts[FAILED],
        released=counts["released"],
        batches=counts["batches"],
        quantum_batches=counts["quantum_batches"],
        classical_batches=counts["classical_batches"],
        templates_compiled=counts["templates_compiled"],
        templates_reused=counts["templates_reused"],
        recovered_batches=recovered,
        t_recover_s=clock.seconds["recover"],
        t_collect_s=clock.seconds["collect"],
        t_plan_s=clock.seconds["plan"],
        t_compile_s=clock.seconds["compile"],
        t_cluster_wait_s=clock.seconds["cluster_wait"],
        t_execute_s=clock.seconds["execute"],
        t_total_s=clock.total(),
        cost_usd=counts["cost_micro_usd"] / 1e6,
        started_at=started_at,
        completed_at=datetime.now(UTC),
    )
    if summary.problems:
        deps.results.write_run(summary)
    log.info("%s", describe(summary))
    return summary


def describe(summary: RunSummary) -> str:
    """The run in one line, for logs and ``serve``."""
    if not summary.problems:
        return f"run {summary.run_id}: nothing queued ({summary.t_total_s:.2f} s)"
    return (
        f"run {summary.run_id}: {summary.problems} problems, {summary.completed} completed, "
        f"{summary.degraded} degraded, {summary.failed} failed, {summary.released} back in "
        f"the queue; {summary.batches} batches on {summary.executor} in {summary.t_total_s:.2f} s"
    )


def _work(
    deps: RunDeps,
    run_id: str,
    backend: Backend,
    claims: list[ClaimedProblem],
    clock: _Clock,
    counts: Counter[str],
    started_at: datetime,
) -> str:
    """Plan, route, compile, dispatch and commit the claimed problems; returns the executor."""
    settings = deps.settings
    with clock.stage("plan"):
        limit = settings.intake.max_attempts
        exhausted = [c for c in claims if c.attempts > limit]
        planned = [_planned(c, settings) for c in claims if c.attempts <= limit]
        batches = plan_batches(
            planned, backend.name, backend.target.why_not, settings.quantum.max_batch_size
        )
    compute = deps.compute.open(run_work_seconds(batches, backend, settings))
    context = RowContext(
        run_id, deps.backend_spec, backend.solver_path, compute.label, settings, started_at
    )
    try:
        with clock.stage("plan"):
            routed = route_batches(
                batches,
                backend,
                settings,
                datetime.now(UTC),
                compiled=lambda shape: deps.templates.path_for(artifact_key(shape, backend)).exists(),
                workers=compute.workers,
            )
            routed.sort(key=lambda b: b.route != "classical")  # CP-SAT first: no compile to wait on
        counts["batches"] = len(routed) + bool(exhausted)
        counts["quantum_batches"] = sum(b.route == "quantum" for b in routed)
        counts["classical_batches"] = sum(b.route == "classical" for b in routed)
        if exhausted:
            _commit_exhausted(deps, context, exhausted, counts)
        deps.progress.stage("execute", sum(b.size for b in routed))
        compiler = TemplateCompiler(deps.templates, backend, routed)
        dispatcher = Dispatcher(
            compute,
            settings,
            deps.backend_spec,
            started_at.timestamp(),
            record=lambda moves: deps.intake.advance_many(run_id, moves),
        )
        try:
            with clock.stage("execute"):
                for finished in dispatcher.run(routed, compiler):
                    post = time.perf_counter()
                    rows = batch_rows(finished, context)
                    written = deps.results.commit_batch(
                        run_id,
                        finished.batch.batch_id,
                        rows.problems,
                        lambda kept: batch_row(finished, context, kept, time.perf_counter() - post),
                        settings.intake.lease_seconds,
                    )
                    _count(counts, written)
                    template = finished.template
                    if template is not None and template.first:
                        clock.seconds["compile"] += template.compile_s
                        counts["templates_compiled" if template.compiled else "templates_reused"] += 1
                    deps.progress.advance(finished.batch.size)
        finally:
            compiler.close()
    finally:
        if isinstance(compute, LocalClusterCompute):
            clock.seconds["cluster_wait"] = compute.waited_s
        compute.close()
    return compute.label


def _planned(claim: ClaimedProblem, settings: Settings) -> PlannedProblem:
    spec = spec_from_record(json.loads(claim.spec_json))
    return PlannedProblem(
        problem_id=claim.id,
        key=claim.key,
        spec=spec,
        formulation=formulate(spec),
        input_hash=claim.input_hash,
        attempts=claim.attempts,
        submitted_at=claim.submitted_at,
        claimed_at=claim.claimed_at,
        reps=spec.reps or settings.quantum.default_reps,
        shots=spec.shots or settings.quantum.default_shots,
    )


def _commit_exhausted(
    deps: RunDeps, context: RowContext, claims: list[ClaimedProblem], counts: Counter[str]
) -> None:
    batch_id = new_batch_id()
    rows = exhausted_rows(claims, batch_id, context)
    attempts = max(c.attempts for c in claims)
    written = deps.results.commit_batch(
        context.run_id,
        batch_id,
        rows,
        lambda kept: exhausted_batch_row(batch_id, context, kept, attempts),
        deps.settings.intake.lease_seconds,
    )
    _count(counts, written)


def _count(counts: Counter[str], rows: Sequence[ProblemRow]) -> None:
    for row in rows:
        counts[row.status] += 1
        counts["cost_micro_usd"] += round(row.cost_usd * 1e6)


def _release(intake: IntakeStore, run_id: str) -> int:
    """Give back what the run holds and did not finish: queued again at once."""
    try:
        released = intake.release(run_id)
    except Exception as exc:  # never hide the error that ended the run; leases expire anyway
        log.error("run %s could not release its claims: %s", run_id, exc)
        return 0
    if released:
        log.warning("run %s handed %d problems back to the queue", run_id, released)
    return released


class _Clock:
    """Seconds per stage; a stage entered twice adds up."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: Counter[str] = Counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def total(self) -> float:
        return time.perf_counter() - self.started
