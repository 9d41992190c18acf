"""How a batch is cut for the workers, and how long its classical problems should take.

Quantum batches are cut into chunks, one per worker with at least four problems each, and
more where the fast path's memory needs it; classical batches into one task per large
problem and one for all the small ones that are enumerated. Routing sizes each batch once
(it knows the workers), dispatch cuts it as sized, and replay cuts a stored batch the same.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TypeVar

from batching.batches import PlannedProblem
from pipeline.memory import fast_path_bytes

T = TypeVar("T")


def chunk_count(size: int, n_qubits: int, workers: int, exact: bool, memory_bytes: int) -> int:
    """How many chunks a quantum batch is cut into: one per worker with at least four
    problems each (lockstep pays per call, not per problem), and on the fast path as many
    more as keep each chunk within a worker's memory."""
    chunks = max(1, min(workers, size // 4))
    if exact:
        per_chunk = 1
        while per_chunk < size and fast_path_bytes(n_qubits, per_chunk * 2) <= memory_bytes:
            per_chunk *= 2
        chunks = max(chunks, math.ceil(size / per_chunk))
    return chunks


def even_cuts(count: int, limit: int) -> list[range]:
    """``count`` consecutive positions cut into as few runs of at most ``limit`` as can be,
    their lengths at most one apart."""
    pieces = math.ceil(count / limit)
    bounds = [count * k // pieces for k in range(pieces + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds)]


def split_chunks(problems: Sequence[T], count: int) -> list[list[T]]:
    """``count`` chunks of consecutive problems, as even as can be (replay cuts the same)."""
    size = math.ceil(len(problems) / count)
    return [list(problems[i : i + size]) for i in range(0, len(problems), size)]


def classical_groups(
    problems: Sequence[PlannedProblem], enumerate_max_variables: int
) -> list[list[PlannedProblem]]:
    """One task for all the small problems (enumerated in a fraction of a millisecond: one
    task each would cost more in scheduling than in solving), one for each large one."""
    small = [p for p in problems if p.formulation.ising.n <= enumerate_max_variables]
    large = [[p] for p in problems if p.formulation.ising.n > enumerate_max_variables]
    return ([small] if small else []) + large


# CP-SAT's time to prove a problem, measured on this kind of machine (2 CP-SAT workers),
# grows tenfold per so many quadratic terms past a base: MaxCut (one XOR per edge) 0.02 s at
# 50 edges, 0.4 s at 80, 2-5 s at 100, unproved in 10 s past ~110 (bench_estimate's
# workloads; MEASUREMENTS.md: 3-regular, 0.1 s at 45 nodes, 6-18 s at 100); QUBO and
# portfolio (products) 12 ms at 66 terms, 1.0-1.4 s at 190 (dense, 12 and 20 variables).
# Past what it can prove, CP-SAT runs to its time limit.
CPSAT_GROWTH = {"maxcut": (0.025, 50, 25.0)}  # kind: (seconds at base, base terms, per tenfold)
CPSAT_GROWTH_PRODUCTS = (0.012, 66, 62.0)


def classical_seconds(problem: PlannedProblem, time_limit_s: float) -> float:
    """CP-SAT's expected time on one problem: milliseconds when small, its whole time limit
    once it has too many terms to prove optimality (it then uses all of it)."""
    seconds, base, per_tenfold = CPSAT_GROWTH.get(problem.spec.kind, CPSAT_GROWTH_PRODUCTS)
    terms = len(problem.formulation.ising.pairs)
    exponent = min(12.0, (terms - base) / per_tenfold)
    return min(time_limit_s, seconds * 10**exponent)
