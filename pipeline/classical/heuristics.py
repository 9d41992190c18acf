"""Feasible starts for CP-SAT: the kind's cheap start, improved by a tabu search.

CP-SAT is hinted with the start, and the start is the answer when CP-SAT finds nothing
better in time, so a good start matters most exactly when the time limit is short. The
tabu search is the classic one for QUBOs: flip the bit that helps most (or hurts least),
and forbid flipping it back for a few steps, so the search walks out of local optima;
with a cardinality constraint it swaps one chosen variable for an unchosen one instead.
It minimises the problem's own objective (no penalties), compiled with numba, and stops
at its time budget or when it has not improved for ``STALL_STEPS`` steps per variable.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from pipeline.formulation import Formulation
from pipeline.kinds import kind_of
from pipeline.kinds.forms import BitArray, FloatArray

STALL_STEPS = 5000  # per variable: give up after this many steps without improvement
_CHUNK_WORK = 2_000_000  # inner-loop operations per compiled call between clock checks


def start(formulation: Formulation, budget_s: float, seed: int = 0) -> BitArray:
    """The kind's heuristic start, then a tabu search from it for up to ``budget_s``."""
    spec = formulation.spec
    bits = kind_of(spec).heuristic_start(spec, formulation.objective_qubo)
    if budget_s <= 0 or formulation.n < 2:
        return bits
    linear, matrix = formulation.objective_qubo.minimisation_form()
    found = tabu_search(linear, matrix, bits, formulation.cardinality is not None, budget_s, seed)
    values = formulation.objective(np.stack([bits, found]))
    better = values[1] < values[0] if formulation.sense == "min" else values[1] > values[0]
    return found if better else bits


def tabu_search(
    linear: FloatArray, matrix: FloatArray, bits: BitArray, swap: bool, budget_s: float, seed: int
) -> BitArray:
    """The best bits found minimising ``linear . x + x'Mx / 2`` from ``bits``.

    ``swap`` keeps ``sum(x)`` fixed (swap moves); otherwise single flips.
    """
    deadline = time.perf_counter() + budget_s
    n = len(linear)
    x = bits.astype(np.int8)
    field = linear + matrix @ x  # change from setting x_i = 1, the others as they are
    value = float(linear @ x + x @ matrix @ x / 2.0)
    best_x = x.copy()
    tabu = np.zeros(n, dtype=np.int64)  # step until which a variable may not move
    tenure = max(1, min(20, n // 4))
    # Updates accumulate rounding: only a gain beyond it counts, or a cycle "improves" forever.
    tol = 1e-9 * (1.0 + float(np.abs(linear).sum() + np.abs(matrix).sum() / 2.0))
    k = int(x.sum())
    work = k * (n - k) + n if swap else 2 * n
    if swap and k in (0, n):
        return best_x
    steps = max(1, _CHUNK_WORK // work)
    _seed(seed)
    step, last, best = 0, 0, value
    while step - last < STALL_STEPS * n and time.perf_counter() < deadline:
        kernel = _swap_steps if swap else _flip_steps
        value, best, improved = kernel(
            matrix, x, field, tabu, best_x, value, best, step, steps, tenure, tol
        )
        step += steps
        last = max(last, improved)
    return best_x


def warm_up() -> None:
    """Compile (first time on a machine) or load (from numba's cache) every kernel, so a
    worker pays this at start-up rather than inside a problem's time limit."""
    linear, matrix = np.array([1.0, -1.0]), np.array([[0.0, 1.0], [1.0, 0.0]])
    for swap in (False, True):
        tabu_search(linear, matrix, np.array([1, 0], dtype=np.int8), swap, 1.0, 0)


@njit(cache=True)
def _seed(seed: int) -> None:  # pragma: no cover - compiled
    """Seed numba's own generator (NumPy's, seeded from Python, is a different one)."""
    np.random.seed(seed)


@njit(cache=True, nogil=True)
def _flip_steps(
    matrix: FloatArray,
    x: BitArray,
    field: FloatArray,
    tabu: np.ndarray,
    best_x: BitArray,
    value: float,
    best: float,
    first: int,
    steps: int,
    tenure: int,
    tol: float,
) -> tuple[float, float, int]:  # pragma: no cover - compiled
    """``steps`` single-flip tabu steps, updating the state in place; aspiration: a tabu
    flip is allowed when it beats the best value found."""
    n = x.shape[0]
    last = -1  # the step of the last improvement; -1 if none
    for step in range(first, first + steps):
        pick, pick_delta = -1, np.inf
        for i in range(n):
            delta = field[i] if x[i] == 0 else -field[i]
            if delta < pick_delta and (tabu[i] <= step or value + delta < best - tol):
                pick, pick_delta = i, delta
        if pick < 0:
            continue
        sign = 1.0 if x[pick] == 0 else -1.0
        x[pick] = 1 - x[pick]
        value += pick_delta
        for j in range(n):
            field[j] += sign * matrix[pick, j]
        tabu[pick] = step + tenure + np.random.randint(0, tenure + 1)
        if value < best - tol:
            best = value
            best_x[:] = x
            last = step
    return value, best, last


@njit(cache=True, nogil=True)
def _swap_steps(
    matrix: FloatArray,
    x: BitArray,
    field: FloatArray,
    tabu: np.ndarray,
    best_x: BitArray,
    value: float,
    best: float,
    first: int,
    steps: int,
    tenure: int,
    tol: float,
) -> tuple[float, float, int]:  # pragma: no cover - compiled
    """``steps`` swap tabu steps (one chosen variable out, one unchosen in), in place."""
    n = x.shape[0]
    last = -1  # the step of the last improvement; -1 if none
    for step in range(first, first + steps):
        out, into, pick_delta = -1, -1, np.inf
        for i in range(n):
            if x[i] == 0:
                continue
            for j in range(n):
                if x[j] == 1:
                    continue
                delta = field[j] - field[i] - matrix[i, j]
                allowed = tabu[i] <= step and tabu[j] <= step
                if delta < pick_delta and (allowed or value + delta < best - tol):
                    out, into, pick_delta = i, j, delta
        if out < 0:
            continue
        x[out], x[into] = 0, 1
        value += pick_delta
        for m in range(n):
            field[m] += matrix[into, m] - matrix[out, m]
        extra = np.random.randint(0, tenure + 1)
        tabu[out] = step + tenure + extra
        tabu[into] = step + tenure + extra
        if value < best - tol:
            best = value
            best_x[:] = x
            last = step
    return value, best, last
