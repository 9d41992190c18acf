"""Our iterated tabu search against dwave-samplers' TabuSampler, at equal wall time.

    make bench-classical         # runs this after bench_classical.py
    .venv/bin/python benchmarks/bench_tabu.py [--quick] [--budget 1] [--seeds 3]

Why: the classical portfolio's heuristic (:mod:`pipeline.classical.heuristics`) is our own
numba code; D-Wave's TabuSampler is a maintained C++ multistart tabu search (Palubeckis'
MST2) for QUBOs. If it answers as well in the same time, the product should use it.

Same instances for both: every MaxCut and QUBO instance with a published optimum in
``data/benchmarks/`` (Biq Mac MaxCut and QUBO, the Karloff cuts; as bench_classical.py)
and random ones (spin-glass MaxCut, dense QUBO, and portfolios, whose budget constraint
TabuSampler can only see as the quantum path's penalty); random instances are judged
against the best answer any run found. Both start from the kind's own start
(:func:`heuristics.kind_start`), get the same budget, one core each, and run under the same
seeds, one solver after the other on the same instance. Ours runs with no early stop
(the product's ``patience`` would stop it early; here it spends the whole budget too).

Per instance and solver: the gap to the optimum (``|answer - optimum| / max(1, |optimum|)``)
of the best and the mean of the seeds; per family, their mean and median over instances.

Measured (dwave-samplers 1.8.0; 2 shared cores under load, 2 workers; 166 instances, 3
seeds): equal on every QUBO, Karloff and random instance; on the 93 Biq Mac MaxCut ones,
at 1 s ours has a mean best gap of 0.013 % (90/93 at the optimum, worst mean 0.92 %),
TabuSampler 0.300 % (80/93, worst 5.1 %); at 0.25 s 0.032 % (86/93) against 0.323 %
(79/93). Medians are 0 for both. So the product keeps its own search, which also keeps a
cardinality constraint by its moves where TabuSampler sees only a penalty.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import dimod
import numpy as np
from bench_classical import BENCHMARKS, instances
from dwave.samplers import TabuSampler
from rich.console import Console
from rich.table import Table

from pipeline.classical.heuristics import improve, kind_start, warm_up
from pipeline.config import LimitSettings
from pipeline.formulation import Formulation, formulate
from pipeline.kinds.forms import BitArray
from pipeline.model import spec_from_record
from pipeline.readers import read_path

SOLVERS = ("ours", "dwave")
COLUMNS = (
    "family",
    "instances",
    "solver",
    "mean best",
    "mean mean",
    "median mean",
    "worst",
    "at optimum",
    "infeasible",
    "wall s",
)
NO_EARLY_STOP = 10**9  # rounds: ours then spends its whole budget, as TabuSampler does


@dataclass(frozen=True)
class Case:
    family: str
    name: str
    formulation: Formulation
    optimum: float | None  # published; None: judged against the best any run found


@dataclass(frozen=True)
class Run:
    case: str
    solver: str
    seed: int
    objective: float | None  # None: infeasible
    wall_s: float


def public_cases(quick: bool, max_n: int | None) -> list[Case]:
    """The instances with published optima that bench_classical.py solves."""
    cases = []
    for instance in instances(max_n, quick):
        records = read_path(BENCHMARKS / instance.folder / instance.name, LimitSettings())
        spec = records[0].spec
        assert spec is not None, records[0].issues
        family = instance.folder.split("-")[1] if "karloff" not in instance.folder else "karloff"
        cases.append(Case(family, instance.name, formulate(spec), instance.optimum))
    return cases


def random_cases(count: int) -> list[Case]:
    """Spin-glass MaxCut (n = 150, +-1 weights), dense QUBO (n = 150) and portfolios (n = 60,
    15 assets), ``count`` of each, seeded."""
    cases = []
    for index in range(count):
        rng = np.random.default_rng(2026 + index)
        for family, record in (
            ("random-maxcut", _spin_glass(rng, 150, 0.05)),
            ("random-qubo", _dense_qubo(rng, 150, 0.3)),
            ("random-portfolio", _portfolio(rng, 60, 15)),
        ):
            spec = spec_from_record(record)
            cases.append(Case(family, f"{family}-{index}", formulate(spec), None))
    return cases


def _spin_glass(rng: np.random.Generator, n: int, density: float) -> dict[str, object]:
    edges = [
        [i, j, int(rng.choice((-1, 1)))]
        for i in range(n)
        for j in range(i + 1, n)
        if rng.random() < density
    ]
    return {"kind": "maxcut", "n": n, "edges": edges}


def _dense_qubo(rng: np.random.Generator, n: int, density: float) -> dict[str, object]:
    quadratic = [
        [i, j, int(rng.integers(-100, 101))]
        for i in range(n)
        for j in range(i + 1, n)
        if rng.random() < density
    ]
    linear = [[i, int(rng.integers(-100, 101))] for i in range(n)]
    return {"kind": "qubo", "n": n, "linear": linear, "quadratic": quadratic, "sense": "min"}


def _portfolio(rng: np.random.Generator, n: int, budget: int) -> dict[str, object]:
    factors = rng.normal(size=(n, n // 2))
    sigma = factors @ factors.T / n
    mu = rng.uniform(0.0, 1.0, n)
    return {
        "kind": "portfolio",
        "mu": mu.round(6).tolist(),
        "sigma": sigma.round(6).tolist(),
        "budget": budget,
        "risk": 0.5,
    }


def ours(formulation: Formulation, start: BitArray, budget_s: float, seed: int) -> BitArray:
    return improve(formulation, start, budget_s, seed, NO_EARLY_STOP).bits


def dwave(formulation: Formulation, start: BitArray, budget_s: float, seed: int) -> BitArray:
    """TabuSampler on the minimisation form of the quantum path's QUBO (a constraint as its
    penalty: it has no moves that keep one), one read from ``start``."""
    linear, matrix = formulation.qubo.minimisation_form()
    bqm = dimod.BQM(np.triu(matrix, 1) + np.diag(linear), "BINARY")
    answer = TabuSampler().sample(
        bqm,
        initial_states=([start.tolist()], list(range(formulation.n))),
        num_reads=1,
        seed=seed,
        timeout=round(budget_s * 1000),
    )
    return np.array([answer.first.sample[i] for i in range(formulation.n)], dtype=np.int8)


SEARCHES: dict[str, Callable[[Formulation, BitArray, float, int], BitArray]] = {
    "ours": ours,
    "dwave": dwave,
}


def solve(case: Case, budget_s: float, seed: int) -> list[Run]:
    """Both solvers on ``case`` under ``seed``, in an order that alternates with the seed."""
    start = kind_start(case.formulation)
    order = SOLVERS if seed % 2 == 0 else SOLVERS[::-1]
    runs = []
    for solver in order:
        began = time.perf_counter()
        bits = SEARCHES[solver](case.formulation, start, budget_s, seed)
        wall = time.perf_counter() - began
        feasible = bool(case.formulation.feasible(bits))
        value = float(case.formulation.objective(bits)) if feasible else None
        runs.append(Run(case.name, solver, seed, value, wall))
    return runs


def _start_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warm_up()
    tiny = formulate(spec_from_record(_spin_glass(np.random.default_rng(0), 8, 0.5)))
    dwave(tiny, np.zeros(8, dtype=np.int8), 0.01, 0)


def gap(value: float | None, reference: float) -> float:
    """The rows' gap formula; an infeasible answer is 100 %."""
    return 1.0 if value is None else abs(value - reference) / max(1.0, abs(reference))


def reference_of(case: Case, runs: Sequence[Run]) -> float:
    """The published optimum, else the best feasible answer any run found."""
    if case.optimum is not None:
        return case.optimum
    values = [r.objective for r in runs if r.objective is not None]
    return max(values) if case.formulation.sense == "max" else min(values)


def per_instance(cases: Sequence[Case], runs: Sequence[Run]) -> dict[tuple[str, str], list[float]]:
    """(case, solver) -> the gap of each seed."""
    gaps: dict[tuple[str, str], list[float]] = {}
    for case in cases:
        mine = [r for r in runs if r.case == case.name]
        reference = reference_of(case, mine)
        for run in mine:
            gaps.setdefault((case.name, run.solver), []).append(gap(run.objective, reference))
    return gaps


def table(cases: Sequence[Case], runs: Sequence[Run], budget_s: float, seeds: int) -> Table:
    gaps = per_instance(cases, runs)
    out = Table(title=f"Tabu search at {budget_s:g} s a run, {seeds} seeds: gap to optimum %")
    for column in COLUMNS:
        out.add_column(column, justify="left" if column in ("family", "solver") else "right")
    families = sorted({c.family for c in cases}, key=lambda f: (f.startswith("random"), f))
    for family in [*families, "all"]:
        names = [c.name for c in cases if family in ("all", c.family)]
        for solver in SOLVERS:
            out.add_row(family, str(len(names)), solver, *_row(names, solver, gaps, runs))
    return out


def _row(
    names: list[str],
    solver: str,
    gaps: dict[tuple[str, str], list[float]],
    runs: Sequence[Run],
) -> list[str]:
    best = [min(gaps[name, solver]) for name in names]
    mean = [statistics.fmean(gaps[name, solver]) for name in names]
    mine = [r for r in runs if r.solver == solver and r.case in set(names)]
    return [
        f"{100 * statistics.fmean(best):.3f}",
        f"{100 * statistics.fmean(mean):.3f}",
        f"{100 * statistics.median(mean):.3f}",
        f"{100 * max(mean):.3f}",
        f"{sum(b <= 1e-12 for b in best)}/{len(best)}",
        str(sum(r.objective is None for r in mine)),
        f"{statistics.median(r.wall_s for r in mine):.2f}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=1.0, help="seconds a run (1)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per instance (3)")
    parser.add_argument("--workers", type=int, default=2, help="processes (one core each)")
    parser.add_argument("--max-n", type=int, default=None, help="only instances up to this n")
    parser.add_argument("--random", type=int, default=2, help="random instances per family")
    parser.add_argument("--quick", action="store_true", help="12 public instances, 0.5 s")
    args = parser.parse_args(argv)
    budget = 0.5 if args.quick and args.budget == 1.0 else args.budget
    cases = public_cases(args.quick, args.max_n) + random_cases(args.random)
    console = Console(width=160)
    console.print(f"{len(cases)} instances x {args.seeds} seeds x 2 solvers at {budget:g} s")
    with ProcessPoolExecutor(args.workers, initializer=_start_worker) as pool:
        jobs = [pool.submit(solve, c, budget, s) for c in cases for s in range(args.seeds)]
        runs = [run for job in jobs for run in job.result()]
    console.print(table(cases, runs, budget, args.seeds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
