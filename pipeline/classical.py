"""Interim CP-SAT path (replaced by the full model module)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from pipeline.formulation import Formulation, bits_to_string
from pipeline.model import MaxCutSpec


@dataclass(frozen=True)
class ClassicalAnswer:
    solution: str
    objective: float
    feasible: bool
    proven_optimal: bool
    status: str
    wall_s: float


def solve_classical(formulation: Formulation, time_limit_s: float, workers: int = 1, seed: int = 0) -> ClassicalAnswer:
    started = time.perf_counter()
    spec = formulation.spec
    model = cp_model.CpModel()
    n = formulation.qubo.n
    x = [model.new_bool_var(f"x{i}") for i in range(n)]
    if isinstance(spec, MaxCutSpec):
        terms = []
        for edge in spec.edges:
            y = model.new_bool_var("")
            model.add_bool_xor([x[int(edge[0])], x[int(edge[1])], y.Not()])
            terms.append((float(edge[2]) if len(edge) == 3 else 1.0) * y)
        model.maximize(sum(terms))
    else:
        from pipeline.formulation import _portfolio_qubo, formulate_unconstrained
        from pipeline.model import PortfolioSpec

        qubo = _portfolio_qubo(spec, penalised=False) if isinstance(spec, PortfolioSpec) else formulate_unconstrained(spec)
        terms = [float(c) * x[i] for i, c in enumerate(qubo.linear) if c]
        for (i, j), c in zip(qubo.pairs, qubo.quad, strict=True):
            y = model.new_bool_var("")
            model.add_multiplication_equality(y, [x[i], x[j]])
            terms.append(float(c) * y)
        if formulation.cardinality is not None:
            model.add(sum(x) == formulation.cardinality)
        if qubo.sense == "max":
            model.maximize(sum(terms))
        else:
            model.minimize(sum(terms))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    status = solver.solve(model)
    bits = np.array([[solver.value(v) for v in x]])
    return ClassicalAnswer(
        bits_to_string(bits[0]), float(formulation.objective(bits)[0]), bool(formulation.feasible(bits)[0]),
        status == cp_model.OPTIMAL, solver.status_name(status), time.perf_counter() - started,
    )
