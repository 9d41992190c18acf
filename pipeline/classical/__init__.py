"""The classical path: a portfolio of CP-SAT and an iterated tabu search on every kind, and
exhaustive enumeration of small problems.

:mod:`pipeline.workers.classical` is what a Dask worker runs for classical problems; it
builds the CP-SAT model there, since models do not pickle. Workers call :func:`warm_up` at
start-up so the heuristic's compiled kernels load outside any problem's time limit.
"""

from __future__ import annotations

import time

from pipeline.classical.cpsat import ClassicalAnswer, solve_classical, solve_plain
from pipeline.classical.heuristics import warm_up
from pipeline.formulation import Formulation, bits_to_string
from pipeline.reference import best_assignment

__all__ = [
    "ClassicalAnswer",
    "enumerate_all",
    "solve_classical",
    "solve_plain",
    "warm_up",
]


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
