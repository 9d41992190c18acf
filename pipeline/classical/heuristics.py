"""Feasible starts and answers: the kind's cheap start, improved by an iterated tabu search.

CP-SAT is hinted with the heuristic's best and the heuristic's best is the answer when
CP-SAT finds nothing better in time, so a good heuristic matters most exactly when CP-SAT
cannot prove (sparse Ising spin glasses, dense QUBOs at n >= 100).

One *round* is the classic tabu search for QUBOs: flip the bit that helps most (or hurts
least) and forbid flipping it back for a few steps, so the search walks out of local
optima; a flip that beats the round's best is allowed even when tabu (aspiration). With a
cardinality constraint a round swaps one chosen variable for an unchosen one instead. A
round ends after ``ROUND_STALL`` steps (at least; ``10 n`` for large ``n``) without
improving. Single-flip tabu alone stalls far from the optimum on spin glasses (t2g15_6666:
7.5 % short), so rounds are iterated: each starts from the *base* solution with about
``PERTURB`` of its variables flipped (swapped under a cardinality) at random; a round's
best becomes the base when it is at least as good as the base, and after ``RESTART``
rounds without a new overall best the base is a random solution. Measured on the Biq Mac
Ising sets at a 3 s budget, two seeds each: 0/24 over the 0.1 %/0.5 % targets (mean gap
0.01 %); perturbing always from the overall best left 3/24 over, with a random walk 4/24.

The search minimises the problem's own objective (no penalties), compiled with numba,
and stops at its time budget or when it has gone ``patience`` rounds, and at least as
many rounds as it took to find its best, without a new best: a problem whose optimum is
found in the first round stops after ``patience`` rounds (milliseconds at n = 40).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numba import njit

from pipeline.formulation import Formulation
from pipeline.kinds import kind_of
from pipeline.kinds.forms import BitArray, FloatArray

ROUND_STALL = 2000  # steps without improving that end a round (10 n when larger)
PERTURB = 0.2  # share of the variables flipped (swaps: of min(k, n - k)) to start a round
RESTART = 100  # rounds without a new best before the base is a random solution
PATIENCE = 100  # rounds without a new best (and as many as the best took) that end a search
_CHUNK_WORK = 2_000_000  # inner-loop operations per compiled call between clock checks


@dataclass(frozen=True)
class Search:
    """What a search found: its best bits, their minimised value (``a.x + x'Mx / 2``),
    the clock (``time.perf_counter``) when it found them (None: no better than its start),
    and how many rounds it ran."""

    bits: BitArray
    value: float
    found_at: float | None
    rounds: int


def start(formulation: Formulation, budget_s: float, seed: int = 0) -> BitArray:
    """The kind's heuristic start, then an iterated tabu search from it for up to ``budget_s``."""
    bits = kind_start(formulation)
    if budget_s <= 0 or formulation.n < 2:
        return bits
    return improve(formulation, bits, budget_s, seed).bits


def kind_start(formulation: Formulation) -> BitArray:
    """The kind's own cheap feasible start (a 1-flip descent; greedy under a budget)."""
    spec = formulation.spec
    return kind_of(spec).heuristic_start(spec, formulation.objective_qubo)


def improve(
    formulation: Formulation,
    bits: BitArray,
    budget_s: float,
    seed: int = 0,
    patience: int = PATIENCE,
) -> Search:
    """An iterated tabu search on ``formulation``'s objective from the feasible ``bits``."""
    linear, matrix = formulation.objective_qubo.minimisation_form()
    swap = formulation.cardinality is not None
    return search(linear, matrix, bits, swap, budget_s, seed, patience)


def search(
    linear: FloatArray,
    matrix: FloatArray,
    bits: BitArray,
    swap: bool,
    budget_s: float,
    seed: int,
    patience: int = PATIENCE,
) -> Search:
    """Iterated tabu search minimising ``linear . x + x'Mx / 2`` from ``bits`` (see the
    module docstring); ``swap`` keeps ``sum(x)`` fixed (swap moves), otherwise single flips.
    Deterministic for a seed unless the budget cuts it short."""
    deadline = time.perf_counter() + budget_s
    x0 = np.asarray(bits, dtype=np.int8).copy()
    best, best_x = _value(linear, matrix, x0), x0.copy()
    k = int(x0.sum())
    if len(linear) < 2 or (swap and k in (0, len(linear))):
        return Search(best_x, best, None, 0)
    walk = _Walk.start(linear, matrix, swap, k, seed)
    base, base_value = x0, best
    x = x0.copy()
    found_at: float | None = None
    rounds = found_round = 0
    while time.perf_counter() < deadline:
        round_x, round_best = walk.round(x, deadline)
        rounds += 1
        if round_best < best - walk.tol:
            best, best_x, found_at, found_round = (
                round_best,
                round_x.copy(),
                time.perf_counter(),
                rounds,
            )
        if round_best <= base_value + walk.tol:
            base, base_value = round_x, round_best
        idle = rounds - found_round
        if idle >= max(patience, found_round):
            break
        if idle and idle % RESTART == 0:
            base = walk.random_bits()
            base_value = _value(linear, matrix, base)
            x = base.copy()
        else:
            x = _perturb(walk.rng, base, swap)
    return Search(best_x, best, found_at, rounds)


@dataclass(frozen=True)
class _Walk:
    """What every round of one search shares: the problem, its move (flip or swap), the
    tabu rules, and the random generator that perturbs and restarts."""

    linear: FloatArray
    matrix: FloatArray
    swap: bool
    ones: int  # sum(x) under swap moves
    rng: np.random.Generator
    tol: float  # updates accumulate rounding: only a gain beyond it counts
    stall: int  # steps without improving that end a round
    rules: tuple[int, int, float]  # the kernel's steps per call, tabu tenure and tolerance

    @classmethod
    def start(
        cls, linear: FloatArray, matrix: FloatArray, swap: bool, ones: int, seed: int
    ) -> _Walk:
        """Rules sized to the problem, and both generators seeded (numba has its own)."""
        n = len(linear)
        # Without the tolerance a cycle of rounding errors would "improve" forever.
        tol = 1e-9 * (1.0 + float(np.abs(linear).sum() + np.abs(matrix).sum() / 2.0))
        tenure = max(1, min(20, n // 4))
        stall = max(ROUND_STALL, 10 * n)
        work = ones * (n - ones) + n if swap else 2 * n
        steps = max(1, min(stall, _CHUNK_WORK // work))
        rng = np.random.default_rng(seed)
        _seed(seed)
        return cls(linear, matrix, swap, ones, rng, tol, stall, (steps, tenure, tol))

    def round(self, x: BitArray, deadline: float) -> tuple[BitArray, float]:
        """Tabu search from ``x`` (moved in place) until it goes ``stall`` steps without
        improving or the deadline passes: the round's best bits and value."""
        kernel = _swap_steps if self.swap else _flip_steps
        field = self.linear + self.matrix @ x  # change from setting x_i = 1, the others as they are
        value = _value(self.linear, self.matrix, x)
        round_x, round_best = x.copy(), value
        tabu = np.zeros(len(x), dtype=np.int64)  # step until which a variable may not move
        state = (x, field, tabu, round_x)
        step, last = 0, 0
        while step - last < self.stall and time.perf_counter() < deadline:
            value, round_best, improved = kernel(
                self.matrix, state, value, round_best, step, self.rules
            )
            step += self.rules[0]
            last = max(last, improved)
        return round_x, round_best

    def random_bits(self) -> BitArray:
        """A fresh base: uniformly random bits, ``ones`` of them set under swap moves."""
        return _random_bits(self.rng, len(self.linear), self.ones if self.swap else None)


def _value(linear: FloatArray, matrix: FloatArray, x: BitArray) -> float:
    xf = x.astype(np.float64)
    return float(linear @ xf + xf @ matrix @ xf / 2.0)


def _random_bits(rng: np.random.Generator, n: int, ones: int | None) -> BitArray:
    """Uniformly random bits; exactly ``ones`` of them set when given."""
    if ones is None:
        return rng.integers(0, 2, n).astype(np.int8)
    x = np.zeros(n, dtype=np.int8)
    x[rng.choice(n, ones, replace=False)] = 1
    return x


def _perturb(rng: np.random.Generator, base: BitArray, swap: bool) -> BitArray:
    """``base`` with about ``PERTURB`` of its variables flipped (or swapped: sum kept)."""
    x = base.copy()
    n = len(x)
    if not swap:
        flips = min(n, max(2, int(PERTURB * n * rng.uniform(0.5, 1.5))))
        x[rng.choice(n, flips, replace=False)] ^= 1
        return x
    ones, zeros = np.flatnonzero(x == 1), np.flatnonzero(x == 0)
    room = min(len(ones), len(zeros))
    swaps = min(room, max(1, int(PERTURB * room * rng.uniform(0.5, 1.5))))
    x[rng.choice(ones, swaps, replace=False)] = 0
    x[rng.choice(zeros, swaps, replace=False)] = 1
    return x


def warm_up() -> None:
    """Compile (first time on a machine) or load (from numba's cache) every kernel, so a
    worker pays this at start-up rather than inside a problem's time limit."""
    linear, matrix = np.array([1.0, -1.0]), np.array([[0.0, 1.0], [1.0, 0.0]])
    for swap in (False, True):
        search(linear, matrix, np.array([1, 0], dtype=np.int8), swap, 1.0, 0, patience=1)


@njit(cache=True)
def _seed(seed: int) -> None:  # pragma: no cover - compiled
    """Seed numba's own generator (NumPy's, seeded from Python, is a different one)."""
    np.random.seed(seed)


@njit(cache=True, nogil=True)
def _flip_steps(
    matrix: FloatArray,
    state: tuple[BitArray, FloatArray, np.ndarray, BitArray],
    value: float,
    best: float,
    first: int,
    rules: tuple[int, int, float],
) -> tuple[float, float, int]:  # pragma: no cover - compiled
    """``steps`` single-flip tabu steps from step ``first``, updating the state (bits,
    field, tabu list, best bits) in place; aspiration: a tabu flip is allowed when it beats
    the best value found. The value, the best value, and the step of the last improvement."""
    x, field, tabu, best_x = state
    steps, tenure, tol = rules
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
    state: tuple[BitArray, FloatArray, np.ndarray, BitArray],
    value: float,
    best: float,
    first: int,
    rules: tuple[int, int, float],
) -> tuple[float, float, int]:  # pragma: no cover - compiled
    """``steps`` swap tabu steps (one chosen variable out, one unchosen in), in place, as
    :func:`_flip_steps`."""
    x, field, tabu, best_x = state
    steps, tenure, tol = rules
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
