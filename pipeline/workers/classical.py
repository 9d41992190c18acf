"""A chunk of classical problems, as a Dask worker runs it: each enumerated when small, else
solved by CP-SAT within its time limit (one large problem, or many small ones together)."""

from __future__ import annotations

import os
import socket
import time

from pipeline.classical import enumerate_all, solve_classical
from pipeline.tasks import Answer, ChunkResult, ClassicalTask


def run_classical_task(task: ClassicalTask) -> ChunkResult:
    """Solve one problem; cost is left at zero because the run bills core-seconds itself."""
    return run_classical_chunk((task,))


def run_classical_chunk(tasks: tuple[ClassicalTask, ...]) -> ChunkResult:
    """Solve each problem in turn (small ones travel together: one task each would cost
    more in scheduling than in solving)."""
    started = time.perf_counter()
    return ChunkResult(
        problem_ids=tuple(task.problem_id for task in tasks),
        answers=tuple(_answer(task) for task in tasks),
        worker=f"{socket.gethostname()}:{os.getpid()}",
        seconds=time.perf_counter() - started,
    )


def _answer(task: ClassicalTask) -> Answer:
    formulation = task.formulation
    small = formulation.objective_qubo.n <= task.enumerate_max_variables
    answer = enumerate_all(formulation) if small else None
    if answer is None:  # too large, or nothing feasible to enumerate: the solver says which
        answer = solve_classical(formulation, task.time_limit_s, task.workers, task.seed)
    return Answer(
        problem_id=task.problem_id,
        solution=answer.solution,
        objective=answer.objective,
        feasible=answer.feasible,
        proven_optimal=answer.proven_optimal,
        seconds=answer.wall_s,
        cost_usd=0.0,
        solver_status=answer.status,
        bound=answer.bound,
    )
