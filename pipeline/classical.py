"""The classical path: every problem kind as an OR-Tools CP-SAT model over 0/1 variables.

Model choices, each measured on 2 workers (see MEASUREMENTS.md, "OR-Tools CP-SAT"):

* MaxCut: one cut variable per edge, ``e = x_u XOR x_v`` written as four linear
  constraints, and ``x_0 = 0`` to break the complement symmetry. Product terms are
  10-300x slower; ``add_bool_xor`` proves the same but slightly slower; dropping the
  two constraints the objective does not need makes CP-SAT much slower here.
* QUBO: one product variable per pair, with only the half of the linearisation the
  objective's sign needs (``y <= x_i, y <= x_j`` when the term should be 1, else
  ``y >= x_i + x_j - 1``): 2-15x faster than the full linearisation or
  ``add_multiplication_equality`` on Biq Mac gka/bqp50 (the XOR form is far slower
  here). At an optimum every product variable equals its product, so the optimum is
  the QUBO's.
* Portfolio: ``max mu.x - q x'Sx`` with ``sum x == budget`` as a hard constraint (not the
  penalised QUBO), full product linearisation plus the reformulation-linearisation cuts
  ``sum_j y_ij == (budget - 1) x_i``: n=60 proves in 0.4 s instead of not in 20 s.

CP-SAT needs integer coefficients. Numbers are taken as the decimals they print as
(``repr``), scaled by a power of ten and divided by their gcd: an exact model, so OPTIMAL
proves the optimum. When that would not fit in 53 bits, coefficients are scaled to
``ROUNDED_SCALE`` and rounded, and ``proven_optimal`` stays False (see ``_integers``).
CP-SAT gets a complete hint from a cheap heuristic (1-flip descent; greedy for the
portfolio): on dense n=100 instances with 2 s it beat unhinted CP-SAT, and a partial hint
(x only) was dropped. That start is also the answer when CP-SAT finds nothing better.
The reported objective is always recomputed from the returned bits with the
formulation's own objective. Models do not pickle, so everything is built here from
plain data, which lets this run on Dask workers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from decimal import Decimal, Inexact, localcontext

import numpy as np
from ortools.sat.python import cp_model

from pipeline.formulation import Formulation, bits_to_string, sense_of
from pipeline.model import MaxCutSpec, PortfolioSpec, ProblemSpec, QuboSpec

ROUNDED_SCALE = 1e6  # largest |coefficient| after scaling a model that cannot be exact
_EXACT_LIMIT = 2**53  # sum of |integer coefficients| an exact model may reach

Pair = tuple[int, int]


@dataclass(frozen=True)
class ClassicalAnswer:
    solution: str  # '0'/'1' string, variable 0 first
    objective: float  # the problem's own objective (formulation.objective), in its own sense
    feasible: bool
    proven_optimal: bool
    status: str  # CP-SAT status name
    wall_s: float


def solve_classical(
    formulation: Formulation, time_limit_s: float, workers: int = 1, seed: int = 0
) -> ClassicalAnswer:
    """Solve with CP-SAT within ``time_limit_s`` of wall time (model building included).

    CP-SAT is hinted with a heuristic start; with no better solution in time, that start
    is the answer (status then UNKNOWN or FEASIBLE, never proven).
    """
    if time_limit_s <= 0 or workers < 1:
        raise ValueError("time_limit_s must be positive and workers at least 1")
    started = time.perf_counter()
    spec = formulation.spec
    linear, pairs, decimal_exact = _terms(spec)
    values, exact = _integers([*linear.values(), *pairs.values()], decimal_exact)
    weights = dict(zip(linear, values[: len(linear)], strict=True))
    pair_weights = dict(zip(pairs, values[len(linear) :], strict=True))
    model, x, pair_vars = _build(spec, weights, pair_weights)
    start = _heuristic(formulation)
    _add_hint(model, x, pair_vars, start, isinstance(spec, MaxCutSpec))

    solver = cp_model.CpSolver()
    # time_limit_s bounds the whole call: building a big model can take seconds.
    remaining = float(time_limit_s) - (time.perf_counter() - started)
    solver.parameters.max_time_in_seconds = max(remaining, 1e-3)
    solver.parameters.num_workers = int(workers)
    solver.parameters.random_seed = int(seed)
    status = solver.solve(model)
    bits = start
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        found = np.array([int(solver.boolean_value(v)) for v in x], dtype=np.int8)
        # CP-SAT may stop before re-finding its hint; never return worse than the hint.
        if (status == cp_model.OPTIMAL and exact) or _better(formulation, found, start):
            bits = found
    return ClassicalAnswer(
        solution=bits_to_string(bits),
        objective=float(formulation.objective(bits)),
        feasible=bool(formulation.feasible(bits)),
        proven_optimal=bool(status == cp_model.OPTIMAL and exact),
        status=solver.status_name(status),
        wall_s=time.perf_counter() - started,
    )


def _better(formulation: Formulation, a: np.ndarray, b: np.ndarray) -> bool:
    """Whether bits ``a`` are at least as good as ``b`` in the problem's own sense."""
    va, vb = formulation.objective(np.stack([a, b]))
    return bool(va <= vb) if sense_of(formulation.spec) == "min" else bool(va >= vb)


def _dec(value: float) -> Decimal:
    """A number as the decimal it prints as: what the submitter wrote."""
    return Decimal(value) if isinstance(value, int) else Decimal(repr(float(value)))


def _terms(spec: ProblemSpec) -> tuple[dict[int, Decimal], dict[Pair, Decimal], bool]:
    """Objective to MINIMISE as decimals: linear terms, pair terms (i < j), and exactness.

    Pair terms are cut indicators for MaxCut and products x_i x_j otherwise. Arithmetic
    runs at 200 digits; should that ever round, the model is flagged inexact.
    """
    linear: dict[int, Decimal] = {}
    pairs: dict[Pair, Decimal] = {}
    zero = Decimal(0)
    with localcontext() as context:
        context.prec = 200
        context.clear_flags()  # the copied context may carry flags from earlier work
        if isinstance(spec, MaxCutSpec):
            for edge in spec.edges:
                u, v = sorted((int(edge[0]), int(edge[1])))
                if u != v:
                    weight = _dec(edge[2]) if len(edge) == 3 else Decimal(1)
                    pairs[(u, v)] = pairs.get((u, v), zero) - weight  # maximise the cut
        elif isinstance(spec, QuboSpec):
            sign = Decimal(1 if spec.sense == "min" else -1)
            for i, c in spec.linear:
                linear[int(i)] = linear.get(int(i), zero) + sign * _dec(c)
            for i, j, c in spec.quadratic:
                u, v = sorted((int(i), int(j)))
                if u == v:  # x_i^2 = x_i
                    linear[u] = linear.get(u, zero) + sign * _dec(c)
                else:
                    pairs[(u, v)] = pairs.get((u, v), zero) + sign * _dec(c)
        else:
            q = _dec(spec.risk)
            n = len(spec.mu)
            for i in range(n):  # maximise mu.x - q x'Sx: minimise its negation
                linear[i] = q * _dec(spec.sigma[i][i]) - _dec(spec.mu[i])
                for j in range(i + 1, n):
                    pairs[(i, j)] = q * (_dec(spec.sigma[i][j]) + _dec(spec.sigma[j][i]))
        exact = not context.flags[Inexact]
    return linear, pairs, exact


def _integers(coefficients: list[Decimal], exact: bool) -> tuple[list[int], bool]:
    """Integer coefficients with the same minimiser, and whether they are exact.

    Exact: decimals scaled by 10^k and divided by their gcd, if their absolute sum stays
    within 2^53. Otherwise scaled so the largest is ``ROUNDED_SCALE`` and rounded: the
    rounded model's optimum may then differ from the true one by the summed rounding
    errors, so its OPTIMAL status proves nothing and the answer is not marked proven.
    """
    if not coefficients:
        return [], exact
    if exact:
        digits = max([0, *(-int(c.normalize().as_tuple().exponent) for c in coefficients if c)])
        if digits <= 300:
            with localcontext() as context:
                context.prec = 600
                values = [int(c.scaleb(digits)) for c in coefficients]
            divisor = math.gcd(*values) or 1
            values = [v // divisor for v in values]
            if sum(abs(v) for v in values) <= _EXACT_LIMIT:
                return values, True
    floats = [float(c) for c in coefficients]
    largest = max(abs(c) for c in floats) or 1.0
    return [round(c * ROUNDED_SCALE / largest) for c in floats], False


def _build(
    spec: ProblemSpec, linear: dict[int, int], pairs: dict[Pair, int]
) -> tuple[cp_model.CpModel, list[cp_model.IntVar], dict[Pair, cp_model.IntVar]]:
    """The CP-SAT model minimising sum(linear x) + sum(pairs y); see the module docstring."""
    model = cp_model.CpModel()
    n = len(spec.mu) if isinstance(spec, PortfolioSpec) else spec.n
    x = [model.new_bool_var(f"x{i}") for i in range(n)]
    variables: list[cp_model.IntVar] = [x[i] for i, c in linear.items() if c]
    coefficients = [c for c in linear.values() if c]
    products: dict[Pair, cp_model.IntVar] = {}
    budget = spec.budget if isinstance(spec, PortfolioSpec) else None
    for (i, j), c in pairs.items():
        if c == 0 and budget is None:
            continue
        y = model.new_bool_var(f"y{i}_{j}")
        if isinstance(spec, MaxCutSpec):  # y = x_i XOR x_j
            model.add(y <= x[i] + x[j])
            model.add(y <= 2 - x[i] - x[j])
            model.add(y >= x[i] - x[j])
            model.add(y >= x[j] - x[i])
        else:  # y = x_i x_j, or only the side a minimiser pushes against
            if budget is not None or c < 0:
                model.add(y <= x[i])
                model.add(y <= x[j])
            if budget is not None or c > 0:
                model.add(y >= x[i] + x[j] - 1)
        products[(i, j)] = y
        variables.append(y)
        coefficients.append(c)
    if isinstance(spec, MaxCutSpec) and n:
        model.add(x[0] == 0)  # a cut and its complement are the same cut
    if budget is not None:
        model.add(cp_model.LinearExpr.sum(x) == budget)
        for i in range(n):  # RLT: multiply the budget constraint by x_i
            row = [products[(min(i, j), max(i, j))] for j in range(n) if j != i]
            model.add(cp_model.LinearExpr.sum(row) == (budget - 1) * x[i])
    model.minimize(cp_model.LinearExpr.weighted_sum(variables, coefficients))
    return model, x, products


def _add_hint(
    model: cp_model.CpModel,
    x: list[cp_model.IntVar],
    pair_vars: dict[Pair, cp_model.IntVar],
    bits: np.ndarray,
    maxcut: bool,
) -> None:
    """Hint a complete solution: partial hints were seen to be dropped on dense instances."""
    if maxcut and len(bits) and bits[0]:
        bits = 1 - bits  # the model fixes x_0 = 0
    for v, b in zip(x, bits, strict=True):
        model.add_hint(v, int(b))
    for (i, j), y in pair_vars.items():
        model.add_hint(y, int(bits[i] ^ bits[j]) if maxcut else int(bits[i] & bits[j]))


def _heuristic(formulation: Formulation) -> np.ndarray:
    """A feasible start: greedy picks up to the budget (portfolio), else 1-flip descent."""
    spec = formulation.spec
    if isinstance(spec, PortfolioSpec):  # minimise q x'Sx - mu.x
        sigma = np.asarray(spec.sigma, dtype=float)
        q = float(spec.risk)
        matrix = q * (sigma + sigma.T)
        np.fill_diagonal(matrix, 0.0)
        linear = q * np.diag(sigma) - np.asarray(spec.mu, dtype=float)
    else:
        qubo = formulation.qubo  # no penalties for MaxCut and QUBO
        sign = -1.0 if qubo.sense == "max" else 1.0
        matrix = np.zeros((qubo.n, qubo.n))
        for (i, j), c in zip(qubo.pairs, qubo.quad, strict=True):
            matrix[i, j] += sign * c
            matrix[j, i] += sign * c
        linear = sign * qubo.linear
    n = len(linear)
    bits = np.zeros(n, dtype=np.int8)
    field = linear.copy()  # change in the minimised objective from setting x_i = 1
    if isinstance(spec, PortfolioSpec):
        for _ in range(min(spec.budget, n)):
            best = int(np.argmin(np.where(bits == 1, np.inf, field)))
            bits[best] = 1
            field += matrix[best]
        return bits
    for _ in range(10 * n):
        gains = np.where(bits == 1, -field, field)  # change from flipping each bit
        best = int(np.argmin(gains))
        if gains[best] >= 0:
            break
        field += (1 - 2 * int(bits[best])) * matrix[best]
        bits[best] ^= 1
    return bits
