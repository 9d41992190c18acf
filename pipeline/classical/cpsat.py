"""The classical portfolio: CP-SAT on every problem kind, raced with an iterated tabu search.

Within one time budget on one core (CP-SAT gets ``workers`` threads, 1 by default):

0. CP-SAT alone for ``PROBE_SHARE`` of the limit (at most ``PROBE_MAX_S``): it proves
   small problems in milliseconds (the demo's 24- and 40-node cuts: 0.01-0.05 s), before
   anything else is paid for: the heuristic's compiled kernels need loading (0.4 s) or,
   with numba's cache stale or unwritable, compiling (3 s) in a process that has not
   called :func:`pipeline.classical.warm_up`.
1. The iterated tabu search (:mod:`pipeline.classical.heuristics`) from the kind's cheap
   start, for ``HEURISTIC_SHARE`` of the time left, stopping earlier when it stalls
   (``HINT_PATIENCE`` rounds without a new best).
2. CP-SAT, hinted with the best so far, until ``CPSAT_END`` of the limit has passed, or
   to the deadline when by then its bound is within ``PROOF_GAP`` of its answer (bqp50-2
   and -9 prove in 4.7-6.9 s; no unproven Biq Mac instance is within 14 % at 7.5 s):
   a complete hint (a partial one, x only, was seen to be dropped) gives it an incumbent
   at once, so it spends its time on the bound and proves sooner.
3. Unless CP-SAT proved the optimum: the tabu search again from the best, to the deadline.

The answer is the best any phase found, ``proven_optimal`` only when CP-SAT proves it,
and ``bound`` CP-SAT's tightest bound over its runs. ``found_s`` says when the answer was
first found. The reported objective is always recomputed from the returned bits with the
formulation's own objective.

The kind supplies the objective as exact decimals and its own variables and constraints
(see :meth:`pipeline.kinds.base.Kind.cpsat_link`; measured choices are documented there).
CP-SAT needs integer coefficients. Numbers are taken as the decimals they print as
(``repr``), scaled by a power of ten and divided by their gcd: an exact model, so OPTIMAL
proves the optimum and CP-SAT's bound converts back exactly. When that would not fit in
53 bits, coefficients are scaled to ``ROUNDED_SCALE`` and rounded, and neither
``proven_optimal`` nor the bound is claimed (see ``_integers``). Models do not pickle, so
everything is built here from plain data, which lets this run on Dask workers.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, localcontext

import numpy as np
from ortools.sat.python import cp_model

from pipeline.classical.heuristics import improve, kind_start
from pipeline.formulation import Formulation, bits_to_string
from pipeline.kinds import kind_of
from pipeline.kinds.base import Pair
from pipeline.kinds.forms import BitArray

PROBE_SHARE = 0.05  # of the limit: CP-SAT alone, first
PROBE_MAX_S = 0.5
PROBE_MIN_S = 0.01  # below this the probe is skipped
HEURISTIC_SHARE = 0.2  # of the time left after the probe: the tabu search's hint budget
HINT_PATIENCE = 300  # rounds without a new best that end the hint's search
CPSAT_END = 0.75  # of the limit: when hinted CP-SAT stops, unless close to a proof
PROOF_GAP = 0.1  # close: CP-SAT's bound within this share of the answer's |objective|
FINAL_PATIENCE = 10**9  # rounds without a new best that end the final search: none
ROUNDED_SCALE = 1e6  # largest |coefficient| after scaling a model that cannot be exact
_EXACT_LIMIT = 2**53  # sum of |integer coefficients| an exact model may reach


@dataclass(frozen=True)
class ClassicalAnswer:
    solution: str  # '0'/'1' string, variable 0 first
    objective: float  # the problem's own objective (formulation.objective), in its own sense
    feasible: bool
    proven_optimal: bool
    status: str  # CP-SAT status name (the best any of its runs reached)
    wall_s: float
    bound: float | None = None  # CP-SAT's best bound, in the problem's own sense and units
    found_s: float | None = None  # seconds from the call's start to the answer's first finding


class _Clock(cp_model.CpSolverSolutionCallback):
    """When CP-SAT found each solution: (its minimised integer objective, perf_counter)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[float, float]] = []

    def on_solution_callback(self) -> None:
        self.found.append((self.objective_value, time.perf_counter()))

    def first(self, value: float) -> float | None:
        return next((at for v, at in self.found if v <= value), None)


@dataclass
class _Best:
    """The best answer so far, in the problem's own sense, and when it was first found."""

    formulation: Formulation
    bits: BitArray
    value: float
    at: float

    def offer(self, bits: BitArray, at: float | None) -> bool:
        """Take ``bits`` if strictly better (beyond rounding); whether they were taken."""
        value = float(self.formulation.objective(bits))
        scale = 1e-9 * max(1.0, abs(value), abs(self.value))
        better = (
            value < self.value - scale
            if self.formulation.sense == "min"
            else value > self.value + scale
        )
        if better:
            self.bits, self.value, self.at = (
                bits,
                value,
                at if at is not None else time.perf_counter(),
            )
        return better


@dataclass
class _Runs:
    """CP-SAT's runs on one model: the best status any reached, and the tightest bound."""

    status: cp_model.CpSolverStatus = cp_model.UNKNOWN
    bound: float | None = None

    def add(
        self,
        formulation: Formulation,
        solver: cp_model.CpSolver,
        status: cp_model.CpSolverStatus,
        unit: Decimal | None,
    ) -> None:
        if _RANK.get(status, 0) > _RANK.get(self.status, 0):
            self.status = status
        bound = _bound(formulation, solver, status, unit)
        if bound is not None:
            tighter = max if formulation.sense == "min" else min
            self.bound = bound if self.bound is None else tighter(self.bound, bound)


_RANK = {cp_model.FEASIBLE: 1, cp_model.OPTIMAL: 2}


def solve_classical(
    formulation: Formulation, time_limit_s: float, workers: int = 1, seed: int = 0
) -> ClassicalAnswer:
    """Solve within ``time_limit_s`` of wall time (model building included): see the module
    docstring for the phases. ``seed`` seeds them all; the answer is reproducible when no
    phase runs out of time."""
    if time_limit_s <= 0 or workers < 1:
        raise ValueError("time_limit_s must be positive and workers at least 1")
    started = time.perf_counter()
    limit = float(time_limit_s)
    deadline = started + limit
    portfolio = _Portfolio.build(formulation, workers, seed)
    proven = False
    probe = min(PROBE_SHARE * limit, PROBE_MAX_S)
    if probe >= PROBE_MIN_S:  # phase 0: CP-SAT alone proves small problems in milliseconds
        proven = portfolio.cpsat(time.perf_counter() + probe, None)
    if not proven:  # phase 1: the heuristic, for a hint
        budget = HEURISTIC_SHARE * (deadline - time.perf_counter())
        if budget > 0 and formulation.n >= 2:
            portfolio.search(budget, seed, HINT_PATIENCE)
        # phase 2: CP-SAT from the heuristic's best
        review_at = started + CPSAT_END * limit
        until = deadline if portfolio.unit is not None else review_at
        proven = portfolio.cpsat(until, portfolio.best.bits, review_at)
    if not proven and formulation.n >= 2:  # phase 3: the heuristic again, to the deadline
        budget = deadline - time.perf_counter()
        if budget > 0:
            portfolio.search(budget, seed + 1, FINAL_PATIENCE)
    best = portfolio.best
    return _answer(best, proven, portfolio.runs.status, started, portfolio.runs.bound)


@dataclass
class _Portfolio:
    """One problem's CP-SAT model, the best answer any phase found, and CP-SAT's runs."""

    formulation: Formulation
    workers: int
    seed: int
    model: cp_model.CpModel
    x: list[cp_model.IntVar]
    pair_vars: dict[Pair, cp_model.IntVar]
    unit: Decimal | None  # what one integer unit of the model is worth (None: rounded)
    runs: _Runs
    best: _Best

    @classmethod
    def build(cls, formulation: Formulation, workers: int, seed: int) -> _Portfolio:
        """The model, and the kind's cheap start as the best so far."""
        model, x, pair_vars, unit = _model(formulation)
        runs = _Runs()
        start = kind_start(formulation)
        best = _Best(formulation, start, float(formulation.objective(start)), time.perf_counter())
        return cls(formulation, workers, seed, model, x, pair_vars, unit, runs, best)

    def search(self, budget_s: float, seed: int, patience: int) -> None:
        """The iterated tabu search from the best so far."""
        found = improve(self.formulation, self.best.bits, budget_s, seed, patience)
        self.best.offer(found.bits, found.found_at)

    def cpsat(self, until: float, hint: BitArray | None, review_at: float | None = None) -> bool:
        """One CP-SAT run until ``until`` (hinted with ``hint``); whether it proved. At
        ``review_at`` it is stopped unless its gap is within ``PROOF_GAP``."""
        self._hint(hint)
        solver = _solver(max(until - time.perf_counter(), 1e-3), self.workers, self.seed)
        clock = _Clock()
        bounds: list[float] = []
        solver.best_bound_callback = bounds.append
        review = self._review(solver, clock, bounds, review_at)
        try:
            status = solver.solve(self.model, clock)
        finally:
            if review is not None:
                review.cancel()
        self.runs.add(self.formulation, solver, status, self.unit)
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            found = np.array([int(solver.boolean_value(v)) for v in self.x], dtype=np.int8)
            self.best.offer(found, clock.first(solver.objective_value))
        return status == cp_model.OPTIMAL and self.unit is not None

    def _hint(self, hint: BitArray | None) -> None:
        """A complete hint (x and the pair variables): a partial one was seen to be dropped."""
        self.model.clear_hints()
        if hint is None:
            return
        hint_x, hint_pairs = kind_of(self.formulation.spec).cpsat_hint(hint, self.pair_vars)
        for v, b in zip(self.x, hint_x, strict=True):
            self.model.add_hint(v, int(b))
        for pair, y in self.pair_vars.items():
            self.model.add_hint(y, hint_pairs[pair])

    def _review(
        self,
        solver: cp_model.CpSolver,
        clock: _Clock,
        bounds: list[float],
        review_at: float | None,
    ) -> threading.Timer | None:
        """A timer that stops ``solver`` at ``review_at`` unless its bound is then within
        ``PROOF_GAP`` of its incumbent (an exact model only: a rounded one proves nothing)."""
        if review_at is None or self.unit is None:
            return None
        scale = float(self.unit)

        def stop_unless_close() -> None:
            if not bounds or not clock.found:
                solver.stop_search()
                return
            incumbent = clock.found[-1][0]
            objective = abs(float(self.best.value))
            if abs(incumbent - bounds[-1]) * scale > PROOF_GAP * max(1.0, objective):
                solver.stop_search()

        review = threading.Timer(max(review_at - time.perf_counter(), 0.0), stop_unless_close)
        review.daemon = True
        review.start()
        return review


def solve_plain(
    formulation: Formulation, time_limit_s: float, workers: int = 1, seed: int = 0
) -> ClassicalAnswer:
    """CP-SAT alone on the same model, unhinted: the baseline the portfolio is measured
    against (``benchmarks/bench_classical.py``). With no solution in time the answer is
    the kind's cheap start (status UNKNOWN)."""
    if time_limit_s <= 0 or workers < 1:
        raise ValueError("time_limit_s must be positive and workers at least 1")
    started = time.perf_counter()
    model, x, _, unit = _model(formulation)
    solver = _solver(max(started + time_limit_s - time.perf_counter(), 1e-3), workers, seed)
    clock = _Clock()
    status = solver.solve(model, clock)
    proven = status == cp_model.OPTIMAL and unit is not None
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        bits = np.array([int(solver.boolean_value(v)) for v in x], dtype=np.int8)
        at = clock.first(solver.objective_value) or time.perf_counter()
    else:
        bits, at = kind_start(formulation), time.perf_counter()
    best = _Best(formulation, bits, float(formulation.objective(bits)), at)
    return _answer(best, proven, status, started, _bound(formulation, solver, status, unit))


def _answer(
    best: _Best,
    proven: bool,
    status: cp_model.CpSolverStatus,
    started: float,
    bound: float | None,
) -> ClassicalAnswer:
    formulation = best.formulation
    return ClassicalAnswer(
        solution=bits_to_string(best.bits),
        objective=best.value,
        feasible=bool(formulation.feasible(best.bits)),
        proven_optimal=bool(proven),
        status=status.name,
        wall_s=time.perf_counter() - started,
        bound=bound,
        found_s=best.at - started,
    )


def _model(
    formulation: Formulation,
) -> tuple[cp_model.CpModel, list[cp_model.IntVar], dict[Pair, cp_model.IntVar], Decimal | None]:
    """The CP-SAT model minimising the kind's integer objective: the model, the ``x``
    variables, the pair variables, and what one integer unit is worth (None: rounded)."""
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
    return model, x, pair_vars, unit


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


def _solver(time_limit_s: float, workers: int, seed: int) -> cp_model.CpSolver:
    """A CP-SAT solver within its limits. It must leave SIGINT alone: by default it catches
    Ctrl-C while solving and afterwards leaves the default action (terminate) in place of
    Python's handler, so a later Ctrl-C or ``kill -INT`` killed the run on the spot instead
    of stopping it cleanly."""
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = int(workers)
    solver.parameters.random_seed = int(seed)
    solver.parameters.catch_sigint_signal = False
    return solver
