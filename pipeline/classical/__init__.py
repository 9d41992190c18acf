"""The classical path: a portfolio of CP-SAT and an iterated tabu search on every kind.

:func:`run_classical_task` is what a Dask worker runs for one classical problem; it
builds the CP-SAT model there, since models do not pickle. Workers call :func:`warm_up`
at start-up so the heuristic's compiled kernels load outside any problem's time limit.
"""

from __future__ import annotations

import os
import socket
import time

from pipeline.classical.cpsat import ClassicalAnswer, solve_classical, solve_plain
from pipeline.classical.heuristics import warm_up
from pipeline.tasks import Answer, ChunkResult, ClassicalTask

__all__ = ["ClassicalAnswer", "run_classical_task", "solve_classical", "solve_plain", "warm_up"]


def run_classical_task(task: ClassicalTask) -> ChunkResult:
    """Solve one problem; cost is left at zero because the run bills core-seconds itself."""
    started = time.perf_counter()
    answer = solve_classical(task.formulation, task.time_limit_s, task.workers, task.seed)
    result = Answer(
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
    return ChunkResult(
        problem_ids=(task.problem_id,),
        answers=(result,),
        worker=f"{socket.gethostname()}:{os.getpid()}",
        seconds=time.perf_counter() - started,
    )
