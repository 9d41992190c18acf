"""A run's work once it has claims: plan, route, compile, dispatch, commit each batch.

Imported by the run core only when there is work, so an empty run never loads Qiskit,
Dask or OR-Tools.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial

from batching import estimate_run, new_batch_id, plan_batches, route_batches
from batching.batches import Batch, PlannedProblem
from batching.economics import Budgets
from batching.estimate import RunEstimate
from flows.compute import Compute, InlineCompute, LocalClusterCompute
from flows.deps import Clock, RunDeps
from flows.dispatch import Dispatcher, FinishedBatch, TemplateCompiler
from flows.rows import RowContext, batch_row, batch_rows, exhausted_batch_row, exhausted_rows
from pipeline.backends import Backend
from pipeline.config import Settings
from pipeline.formulation import formulate
from pipeline.intake import FAILED, ClaimedProblem
from pipeline.model import spec_from_record
from pipeline.qaoa.angle_store import AngleLibrary, record_batch
from pipeline.qaoa.evaluators import uses_fast_path
from pipeline.qaoa.templates import artifact_key
from pipeline.results import BatchRow, ProblemRow

log = logging.getLogger("qhopper.run")


def wave_size(settings: Settings, workers: int) -> int:
    """Problems one claim takes: two full batches per worker keep every worker busy while
    the next wave is claimed, and a deep queue never sits in one runner's memory."""
    return max(1, min(settings.intake.claim_limit, 2 * workers * settings.quantum.max_batch_size))


def execute_claims(
    deps: RunDeps,
    run_id: str,
    backend: Backend,
    claims: list[ClaimedProblem],
    clock: Clock,
    counts: Counter[str],
    started_at: datetime,
    backlog: int,
    waves: bool = True,
) -> str:
    """Plan, route, compile, dispatch and commit the claimed problems, claiming the next
    wave (unless ``waves`` is off) whenever less than half a wave is still out; returns the
    executor. ``backlog``: how many problems were claimable when the run began."""
    settings = deps.settings
    templates = deps.templates()
    with clock.stage("plan"):
        exhausted, batches = _plan(claims, backend, settings)
    compute = deps.compute.open(estimate_run(batches, backend, settings).core_seconds)
    context = RowContext(
        run_id, deps.backend_spec, backend.solver_path, compute.label, settings, started_at
    )
    thread = compute.thread if isinstance(compute, InlineCompute) else None
    compiler = TemplateCompiler(templates, backend, thread)
    library = AngleLibrary(deps.intake.engine)  # shared by every process and host
    dispatcher = Dispatcher(
        compute,
        settings,
        backend,
        started_at.timestamp(),
        record=lambda moves: deps.intake.advance_many(run_id, moves),
        library=library,
    )
    wave = wave_size(settings, compute.workers)
    budgets = Budgets.for_run(settings)  # one run budget across all its waves
    total = max(backlog, len(claims))
    announced = False
    try:
        while True:
            with clock.stage("plan"):
                routed = route_batches(
                    batches,
                    backend,
                    settings,
                    datetime.now(UTC),
                    compiled=lambda shape: templates.path_for(
                        artifact_key(shape, backend)
                    ).exists(),
                    workers=compute.workers,
                    budgets=budgets,
                )
                routed.sort(key=lambda b: b.route != "classical")  # CP-SAT first: no compile
            if not announced:
                _announce(deps, run_id, estimate_run(routed, backend, settings), compute, total)
                announced = True
            counts["batches"] += len(routed) + bool(exhausted)
            counts["quantum_batches"] += sum(b.route == "quantum" for b in routed)
            counts["classical_batches"] += sum(b.route == "classical" for b in routed)
            if exhausted:
                _commit_exhausted(deps, context, exhausted, counts)
            compiler.add(routed)
            with clock.stage("execute"):
                dispatcher.dispatch(routed, compiler)
                for finished in dispatcher.finished(until_in_flight=wave // 2):
                    _commit(deps, context, finished, clock, counts, library)
            more = deps.intake.claim(run_id, wave, settings.intake.lease_seconds) if waves else []
            if not more:
                break
            counts["problems"] += len(more)
            deps.progress.note(f"run {run_id}: claimed {len(more)} more problems")
            with clock.stage("plan"):
                exhausted, batches = _plan(more, backend, settings)
        with clock.stage("execute"):
            for finished in dispatcher.finished():
                _commit(deps, context, finished, clock, counts, library)
    finally:
        compiler.close()
        if isinstance(compute, LocalClusterCompute):
            clock.seconds["cluster_wait"] = compute.waited_s
        compute.close()
    return compute.label


def _announce(
    deps: RunDeps, run_id: str, estimate: RunEstimate, compute: Compute, total: int
) -> None:
    """Say the plan and how long it should take before computing, and start the progress
    (its ETA starts from this estimate)."""
    said = estimate.describe(compute.workers, total)
    deps.progress.note(said)
    fields = {
        "event": "plan",
        "run_id": run_id,
        "estimated_s": estimate.wall_seconds(compute.workers, total),
    }
    log.info("run %s %s", run_id, said, extra={"fields": fields})
    deps.progress.stage("execute", total, estimate.wall_seconds(compute.workers, total))


def _plan(
    claims: list[ClaimedProblem], backend: Backend, settings: Settings
) -> tuple[list[ClaimedProblem], list[Batch]]:
    """Claims past their attempt limit, and batches of the rest."""
    limit = settings.intake.max_attempts
    exhausted = [c for c in claims if c.attempts > limit]
    planned = [_planned(c, settings) for c in claims if c.attempts <= limit]
    batches = plan_batches(
        planned,
        backend.name,
        backend.target.why_not,
        settings.quantum.max_batch_size,
        pooled=lambda n: uses_fast_path(backend, n),
    )
    return exhausted, batches


def _commit(
    deps: RunDeps,
    context: RowContext,
    finished: FinishedBatch,
    clock: Clock,
    counts: Counter[str],
    library: AngleLibrary,
) -> None:
    """A finished batch's rows, committed; its counts and timings added to the run's; its
    refined angles written back to the angle library, so the next batch of its class starts
    there."""
    post = time.perf_counter()
    rows = batch_rows(finished, context)
    written = deps.results.commit_batch(
        context.run_id,
        finished.batch.batch_id,
        rows,
        partial(_batch_row, finished, context, post),
        deps.settings.intake.lease_seconds,
    )
    _count(counts, written)
    _log_batch(context.run_id, finished, written, deps.backend_spec)
    _learn(library, finished, written)
    template = finished.template
    if template is not None and template.first:
        clock.seconds["compile"] += template.compile_s
        counts["templates_compiled" if template.compiled else "templates_reused"] += 1
    deps.progress.advance(finished.batch.size)


def _batch_row(
    finished: FinishedBatch, context: RowContext, post_started: float, kept: list[ProblemRow]
) -> BatchRow:
    return batch_row(finished, context, kept, time.perf_counter() - post_started)


def _learn(library: AngleLibrary, finished: FinishedBatch, written: Sequence[ProblemRow]) -> None:
    """Record the angles the batch's quantum answers reached, judged by their references."""
    batch = finished.batch
    if batch.angle_shape is None:
        return
    answers = {a.problem_id: a for r in finished.results for a in r.answers}
    quantum = [
        r
        for r in written
        if r.route == "quantum" and r.status != FAILED and r.problem_id in answers
    ]
    if not quantum:
        return
    record_batch(
        library,
        batch.problems[0].spec.kind,
        batch.angle_shape,
        [answers[r.problem_id] for r in quantum],
        [r.reference_objective for r in quantum],
        finished.angle_plan.source if finished.angle_plan else "grid",
        scales=[r.objective_scale for r in quantum],
    )


def _log_batch(
    run_id: str, finished: FinishedBatch, written: Sequence[ProblemRow], backend: str
) -> None:
    """One structured event per committed batch: ids, route, backend, shape, jobs, timings."""
    batch = finished.batch
    fields = {
        "event": "batch",
        "run_id": run_id,
        "batch_id": batch.batch_id,
        "route": batch.route,
        "backend": backend if batch.route == "quantum" else "ortools-cpsat",
        "shape": batch.shape.label if batch.shape else None,
        "problem_ids": [r.problem_id for r in written],
        "statuses": dict(Counter(r.status for r in written)),
        "provider_job_ids": sorted({j for r in finished.results for j in r.job_ids}),
        "t_compile_s": finished.template.compile_s if finished.template else 0.0,
        "t_execute_s": finished.execute_s,
    }
    log.info("batch %s committed: %d rows", batch.batch_id, len(written), extra={"fields": fields})


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
        trace_id=claim.trace_id,
        supersedes=claim.supersedes,
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
