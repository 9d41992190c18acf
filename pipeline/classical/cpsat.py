"""Every problem kind as an OR-Tools CP-SAT model over 0/1 variables.

The kind supplies the objective as exact decimals and its own variables and constraints
(see :meth:`pipeline.kinds.base.Kind.cpsat_link`; measured choices are documented there).
CP-SAT needs integer coefficients. Numbers are taken as the decimals they print as
(``repr``), scaled by a power of ten and divided by their gcd: an exact model, so OPTIMAL
proves the optimum and CP-SAT's bound converts back exactly. When that would not fit in
53 bits, coefficients are scaled to ``ROUNDED_SCALE`` and rounded, and neither
``proven_optimal`` nor the bound is claimed (see ``_integers``).
CP-SAT gets a complete hint (a partial one, x only, was seen to be dropped): the kind's
cheap start improved by a tabu search (:mod:`pipeline.classical.heuristics`) given
``HEURISTIC_SHARE`` of the time. With 1 s and one worker that took the Biq Mac sets from
17/64 (QUBO) and 2/93 (MaxCut) published optima to 63/64 and 78/93 (mean gap 2.6% ->
0.34% and 9.0% -> 0.31%). The start is also
the answer when CP-SAT finds nothing better. The reported objective is always recomputed
from the returned bits with the formulation's own objective. Models do not pickle, so
everything is built here from plain data, which lets this run on Dask workers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from decimal import Decimal, localcontext

import numpy as np
from ortools.sat.python import cp_model

from pipeline.classical.heuristics import start as heuristic_start
from pipeline.formulation import Formulation, bits_to_string
from pipeline.kinds import kind_of
from pipeline.kinds.forms import BitArray

HEURISTIC_SHARE = 0.2  # of the time left after building the model: the tabu search's budget
ROUNDED_SCALE = 1e6  # largest |coefficient| after scaling a model that cannot be exact
_EXACT_LIMIT = 2**53  # sum of |integer coefficients| an exact model may reach


@dataclass(frozen=True)
class ClassicalAnswer:
    solution: str  # '0'/'1' string, variable 0 first
    objective: float  # the problem's own objective (formulation.objective), in its own sense
    feasible: bool
    proven_optimal: bool
    status: str  # CP-SAT status name
    wall_s: float
    bound: float | None = None  # CP-SAT's best bound, in the problem's own sense and units


def solve_classical(
    formulation: Formulation, time_limit_s: float, workers: int = 1, seed: int = 0
) -> ClassicalAnswer:
    """Solve with CP-SAT within ``time_limit_s`` of wall time (model building included).

    CP-SAT is hinted with a tabu search's start; with no better solution in time, that
    start is the answer (status then UNKNOWN or FEASIBLE, never proven). ``seed`` seeds
    both; the answer is reproducible when neither runs out of time.
    """
    if time_limit_s <= 0 or workers < 1:
        raise ValueError("time_limit_s must be positive and workers at least 1")
    started = time.perf_counter()
    spec = formulation.spec
    kind = kind_of(spec)
    terms = kind.cpsat_terms(spec)
    values, unit = _integers([*terms.linear.values(), *terms.pairs.values()], terms.exact)
    weights = dict(zip(terms.linear, values[: len(terms.linear)], strict=True))
    pair_weights = dict(zip(terms.pairs, values[len(terms.linear) :], strict=True))

    model = cp_model.CpModel()
    x = [model.new_bool_var(f"x{i}") for i in range(formulation.n)]
    pair_vars = kind.cpsat_link(spec, model, x, pair_weights)
    objective = [(x[i], c) for i, c in weights.items() if c]
    objective += [(y, pair_weights[pair]) for pair, y in pair_vars.items()]
    model.minimize(
        cp_model.LinearExpr.weighted_sum([v for v, _ in objective], [c for _, c in objective])
    )
    budget = HEURISTIC_SHARE * (float(time_limit_s) - (time.perf_counter() - started))
    start = heuristic_start(formulation, budget, seed)
    hint_x, hint_pairs = kind.cpsat_hint(start, pair_vars)
    for v, b in zip(x, hint_x, strict=True):
        model.add_hint(v, int(b))
    for pair, y in pair_vars.items():
        model.add_hint(y, hint_pairs[pair])

    solver = cp_model.CpSolver()
    # time_limit_s bounds the whole call: building a big model can take seconds.
    remaining = float(time_limit_s) - (time.perf_counter() - started)
    solver.parameters.max_time_in_seconds = max(remaining, 1e-3)
    solver.parameters.num_workers = int(workers)
    solver.parameters.random_seed = int(seed)
    status = solver.solve(model)
    bits = start
    proven = status == cp_model.OPTIMAL and unit is not None
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        found = np.array([int(solver.boolean_value(v)) for v in x], dtype=np.int8)
        # CP-SAT may stop before re-finding its hint; never return worse than the hint.
        if proven or _better(formulation, found, start):
            bits = found
    return ClassicalAnswer(
        solution=bits_to_string(bits),
        objective=float(formulation.objective(bits)),
        feasible=bool(formulation.feasible(bits)),
        proven_optimal=bool(proven),
        status=solver.status_name(status),
        wall_s=time.perf_counter() - started,
        bound=_bound(formulation, solver, status, unit),
    )


def _better(formulation: Formulation, a: BitArray, b: BitArray) -> bool:
    """Whether bits ``a`` are at least as good as ``b`` in the problem's own sense."""
    va, vb = formulation.objective(np.stack([a, b]))
    return bool(va <= vb) if formulation.sense == "min" else bool(va >= vb)


def _bound(
    formulation: Formulation,
    solver: cp_model.CpSolver,
    status: cp_model.CpSolverStatus,
    unit: Decimal | None,
) -> float | None:
    """CP-SAT's bound on the minimised integers, back in the problem's own sense and units.

    The minimised objective is ``sign * (objective - objective(0))`` (sign = -1 for max),
    and one integer unit of it is worth ``unit``. None for a rounded model (its bound
    bounds the rounded problem only), and without a solution: CP-SAT then reports 0.
    """
    if unit is None or status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    raw = solver.best_objective_bound
    if not math.isfinite(raw):
        return None
    sign = -1.0 if formulation.sense == "max" else 1.0
    offset = float(formulation.objective(np.zeros(formulation.n, dtype=np.int8)))
    return offset + sign * float(Decimal(round(raw)) * unit)


def _integers(coefficients: list[Decimal], exact: bool) -> tuple[list[int], Decimal | None]:
    """Integer coefficients with the same minimiser, and what one integer unit is worth.

    Exact: decimals scaled by 10^k and divided by their gcd, if their absolute sum stays
    within 2^53; one unit is then worth gcd / 10^k. Otherwise scaled so the largest is
    ``ROUNDED_SCALE`` and rounded (unit None): the rounded model's optimum may differ from
    the true one by the summed rounding errors, so its OPTIMAL status proves nothing.
    """
    if not coefficients:
        return [], Decimal(1) if exact else None
    if exact:
        digits = max([0, *(-int(c.normalize().as_tuple().exponent) for c in coefficients if c)])
        if digits <= 300:
            with localcontext() as context:
                context.prec = 600
                values = [int(c.scaleb(digits)) for c in coefficients]
                divisor = math.gcd(*values) or 1
                unit = Decimal(divisor).scaleb(-digits)
            values = [v // divisor for v in values]
            if sum(abs(v) for v in values) <= _EXACT_LIMIT:
                return values, unit
    floats = [float(c) for c in coefficients]
    largest = max(abs(c) for c in floats) or 1.0
    return [round(c * ROUNDED_SCALE / largest) for c in floats], None
