"""The classical path: a portfolio of CP-SAT and an iterated tabu search on every kind.

:func:`run_classical_chunk` is what a Dask worker runs for classical problems (one large
problem, or many small ones that are enumerated); it builds the CP-SAT model there, since
models do not pickle. Workers call :func:`warm_up` at start-up so the heuristic's compiled
kernels load outside any problem's time limit.
"""

from __future__ import annotations

import os
import socket
import time

from pipeline.classical.cpsat import ClassicalAnswer, solve_classical, solve_plain
from pipeline.classical.heuristics import warm_up
from pipeline.formulation import Formulation, bits_to_string
from pipeline.reference import best_assignment
from pipeline.tasks import Answer, ChunkResult, ClassicalTask

__all__ = [
    "ClassicalAnswer",
    "enumerate_all",
    "run_classical_chunk",
    "run_classical_task",
    "solve_classical",
    "solve_plain",
    "warm_up",
]


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


def enumerate_all(formulation: Formulation) -> ClassicalAnswer | None:
    """The optimum by enumerating every assignment: proven, status ``ENUMERATED``; None
    when no assignment is feasible."""
    started = time.perf_counter()
    found = best_assignment(formulation)
    if found is None:
        return None
    bits = found[1]
    objective = float(formulation.objective(bits[None, :])[0])  # recomputed from the bits
    seconds = time.perf_counter() - started
    return ClassicalAnswer(
        solution=bits_to_string(bits),
        objective=objective,
        feasible=True,
        proven_optimal=True,
        status="ENUMERATED",
        wall_s=seconds,
        bound=objective,
        found_s=seconds,
    )
