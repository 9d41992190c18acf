"""Rows assembled from results: a finished batch becomes problem rows and its batch row.

Each problem's row says which path produced its answer and why: the planned route's
answer (completed), the classical fallback's (degraded, with the reason), or none. A
problem with no answer at all (its task raised: a lost worker, out of memory) goes back
to the queue for another attempt while it has attempts left, and only then ends failed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batching.batches import Batch, FinishedBatch, PlannedProblem, RoutingNumbers
from pipeline.config import ClassicalSettings, PriceSettings
from pipeline.fallback import Fallback, FallbackCode
from pipeline.intake import COMPLETED, DEGRADED, FAILED
from pipeline.quality import objective_scale
from pipeline.reference import judge
from pipeline.results.rows import BatchRow, ProblemRow
from pipeline.results.store import ResultStore
from pipeline.tasks import Answer, ChunkResult
from pipeline.vocabulary import Route, SolverPath

CLASSICAL_BACKEND = "ortools-cpsat"


@dataclass(frozen=True)
class RowContext:
    """What every row of a run shares."""

    run_id: str
    backend: str  # the quantum backend's spec
    solver_path: SolverPath  # the quantum backend's: simulator | qpu
    executor: str
    started_at: datetime
    max_attempts: int
    classical: ClassicalSettings  # the reference's limits
    prices: PriceSettings


def batch_rows(finished: FinishedBatch, context: RowContext) -> list[ProblemRow]:
    """A row per problem with an answer or out of attempts; the others get none, and the
    run hands them back to the queue when it ends."""
    batch = finished.batch
    quantum = _answers(finished.results) if finished.quantum else {}
    classical = _answers(finished.fallback_results if finished.quantum else finished.results)
    before = _quantum_attempts(finished) if finished.quantum else {}
    completed_at = datetime.now(UTC)
    rows: list[ProblemRow] = []
    limit = context.max_attempts
    for problem in batch.problems:
        pid = problem.problem_id
        why = finished.fallbacks.get(pid)
        if pid in quantum and why is None:
            chunk_s = before[pid].seconds
            rows.append(
                _quantum_row(context, finished, problem, quantum[pid], chunk_s, completed_at)
            )
        elif pid in classical:
            spent = before.get(pid, _Attempt())
            answer = classical[pid]
            rows.append(
                _classical_row(context, finished, problem, answer, why, spent, completed_at)
            )
        elif problem.attempts >= limit:
            error = finished.errors.get(pid) or why
            message = (
                f"{error.message if error else 'no answer'} (attempt {problem.attempts} of {limit})"
            )
            why = Fallback(error.code if error else FallbackCode.EXECUTION_ERROR, message)
            rows.append(_failed_row(context, problem, batch, why, completed_at))
    return [_finite_or_failed(row) for row in rows]


def _finite_or_failed(row: ProblemRow) -> ProblemRow:
    """A row whose objective is NaN or infinite reports no answer: it ends failed, saying why.

    Validation keeps coefficients far from overflowing; this is the second line of defence,
    so a NaN can never be written as a completed answer."""
    if row.status == FAILED or (row.objective is not None and math.isfinite(row.objective)):
        return row
    reason = f"the answer's objective came out {row.objective} (not a finite number)"
    if row.fallback_reason:
        reason += f"; before that: {row.fallback_reason}"
    return dataclasses.replace(
        row,
        status=FAILED,
        fallback_code=FallbackCode.NON_FINITE_OBJECTIVE,
        fallback_reason=reason,
        solution=None,
        objective=None,
        feasible=False,
        proven_optimal=False,
    )


def batch_row(
    finished: FinishedBatch, context: RowContext, rows: Sequence[ProblemRow], post_s: float
) -> BatchRow:
    batch = finished.batch
    quantum = finished.quantum
    results = finished.results if quantum else ()
    errors = [r.fallback.message for r in results if r.fallback] + [
        e.message for e in finished.errors.values()
    ]
    template = finished.template
    jobs = sum(r.jobs for r in results)
    return BatchRow(
        batch_id=batch.batch_id,
        run_id=context.run_id,
        route=batch.route,
        route_reason=batch.route_reason,
        shape_key=batch.shape.label if batch.shape else None,
        kind=",".join(sorted({p.spec.kind for p in batch.problems})),
        size=len(rows),
        n_qubits=batch.shape.n_qubits if batch.shape else None,
        reps=_reps_that_ran(rows) or (batch.shape.reps if batch.shape else None),
        backend=context.backend if quantum else CLASSICAL_BACKEND,
        solver_path=context.solver_path if quantum else SolverPath.CLASSICAL,
        executor=context.executor,
        attempts=max(p.attempts for p in batch.problems),
        templates_compiled=int(template is not None and template.compiled),
        templates_reused=int(template is not None and not template.compiled),
        artifact_key=template.artifact_key if template else None,
        chunks=finished.chunks,
        evaluations=sum(r.evaluations for r in rows),
        t_compile_s=template.compile_s if template else 0.0,
        t_execute_s=finished.execute_s,
        t_post_s=post_s,
        cost_usd=sum(r.cost_usd for r in rows),
        backend_attempts=sum(r.attempts for r in results),
        backend_failures=sum(r.failures for r in results),
        max_attempts_per_call=max((r.max_attempts_per_call for r in results), default=0),
        jobs=jobs,
        problems_per_job=sum(len(r.answers) for r in results) / jobs if jobs else None,
        qpu_seconds=sum(r.qpu_seconds for r in results),
        quantum_cost_usd=sum(r.cost_usd for r in results),
        provider_job_ids=",".join(j for r in results for j in r.job_ids) or None,
        fallback_reason="; ".join(dict.fromkeys(errors))[:1000] or None,
        started_at=context.started_at,
        completed_at=rows[0].completed_at if rows else None,
        **(_routing_columns(batch.routing) if batch.routing else {}),
    )


def _routing_columns(routing: RoutingNumbers) -> dict[str, Any]:
    """The numbers behind the route as the batch row's columns (the decision is ``route``)."""
    return {
        f.name: getattr(routing, f.name)
        for f in dataclasses.fields(routing)
        if f.name not in ("decision", "reason")
    }


def _reps_that_ran(rows: Sequence[ProblemRow]) -> int | None:
    """The depth most of the batch's quantum answers ran (the library may lower it)."""
    reps = Counter(r.reps for r in rows if r.reps is not None)
    return reps.most_common(1)[0][0] if reps else None


def _answers(results: Sequence[ChunkResult]) -> dict[str, Answer]:
    return {a.problem_id: a for r in results for a in r.answers}


@dataclass(frozen=True)
class _Attempt:
    """What a quantum attempt cost a problem that then fell back: its share of the failed
    chunk's bill, and the chunk's time (the problem waited for it)."""

    cost_usd: float = 0.0
    seconds: float = 0.0


def _quantum_attempts(finished: FinishedBatch) -> dict[str, _Attempt]:
    """Each problem's quantum attempt: a failed chunk's bill is split between its problems."""
    return {
        pid: _Attempt(r.cost_usd / len(r.problem_ids) if r.fallback is not None else 0.0, r.seconds)
        for r in finished.results
        for pid in r.problem_ids
    }


def _common(
    context: RowContext, problem: PlannedProblem, batch: Batch, completed_at: datetime
) -> dict[str, object]:
    submitted = problem.submitted_at.replace(tzinfo=UTC)
    return {
        "problem_id": problem.problem_id,
        "key": problem.key,
        "run_id": context.run_id,
        "batch_id": batch.batch_id,
        "kind": problem.spec.kind,
        "n_variables": problem.formulation.ising.n,
        "objective_scale": objective_scale(problem.formulation.objective_qubo),
        "tenant": problem.spec.tenant,
        "attempts": problem.attempts,
        "t_queue_s": (problem.claimed_at - problem.submitted_at).total_seconds(),
        "t_total_s": (completed_at - submitted).total_seconds(),
        "submitted_at": submitted,
        "completed_at": completed_at,
        "input_hash": problem.input_hash,
        "trace_id": problem.trace_id,
        "supersedes": problem.supersedes,
    }


def _quantum_row(
    context: RowContext,
    finished: FinishedBatch,
    problem: PlannedProblem,
    answer: Answer,
    chunk_s: float,  # the seconds of the chunk it ran in
    completed_at: datetime,
) -> ProblemRow:
    batch = finished.batch
    assert batch.shape is not None and finished.template is not None
    cpsat = finished.references.get(problem.problem_id)
    reference = judge(
        problem.formulation,
        problem.known_instance,
        (cpsat.objective, cpsat.proven_optimal) if cpsat else None,
        context.classical,
    )
    return ProblemRow(
        **_common(context, problem, batch, completed_at),  # type: ignore[arg-type]
        shape_key=batch.shape.label,
        route=Route.QUANTUM,
        solver_path=context.solver_path,
        backend=context.backend,
        status=COMPLETED,
        solution=answer.solution,
        objective=answer.objective,
        feasible=answer.feasible,
        proven_optimal=False,
        expected_objective=answer.expected_objective,
        angles=answer.angles,
        qubits=answer.qubits or None,
        reference_objective=reference.objective,
        reference_solver=reference.solver,
        reference_proven=reference.proven,
        reference_note=reference.note,
        reps=answer.reps,
        shots=problem.shots,
        evaluations=answer.evaluations,
        cost_usd=answer.cost_usd,
        t_compile_s=finished.template.compile_s,
        t_execute_s=chunk_s,
        provider_job_id=answer.provider_job_id,
        circuit_hash=finished.template.artifact_key,
    )


def _classical_row(
    context: RowContext,
    finished: FinishedBatch,
    problem: PlannedProblem,
    answer: Answer,
    why: Fallback | None,
    before: _Attempt,
    completed_at: datetime,
) -> ProblemRow:
    prices = context.prices
    gap = None
    if answer.bound is not None:
        gap = abs(answer.bound - answer.objective) / max(1.0, abs(answer.objective))
    return ProblemRow(
        **_common(context, problem, finished.batch, completed_at),  # type: ignore[arg-type]
        shape_key=problem.classical_shape_key,
        route=Route.CLASSICAL,
        solver_path=SolverPath.CLASSICAL,
        backend=CLASSICAL_BACKEND,
        status=DEGRADED if why else COMPLETED,
        fallback_code=why.code if why else None,
        fallback_reason=why.message if why else None,
        solution=answer.solution,
        objective=answer.objective,
        feasible=answer.feasible,
        proven_optimal=answer.proven_optimal,
        bound=answer.bound,
        gap=gap,
        reference_note=problem.known_instance,
        cost_usd=before.cost_usd + answer.seconds * prices.cpu_usd_per_core_second,
        t_execute_s=before.seconds + answer.seconds,
    )


def _failed_row(
    context: RowContext,
    problem: PlannedProblem,
    batch: Batch,
    why: Fallback,
    completed_at: datetime,
) -> ProblemRow:
    return ProblemRow(
        **_common(context, problem, batch, completed_at),  # type: ignore[arg-type]
        status=FAILED,
        fallback_code=why.code,
        fallback_reason=why.message,
    )


def commit_finished(
    store: ResultStore, finished: FinishedBatch, context: RowContext, lease_seconds: float
) -> list[ProblemRow]:
    """A finished batch's rows and batch row, committed; the rows actually written (those
    whose problems the run still holds)."""
    post = time.perf_counter()

    def row_of_batch(kept: list[ProblemRow]) -> BatchRow:
        return batch_row(finished, context, kept, time.perf_counter() - post)

    rows = batch_rows(finished, context)
    batch_id = finished.batch.batch_id
    return store.commit_batch(context.run_id, batch_id, rows, row_of_batch, lease_seconds)
