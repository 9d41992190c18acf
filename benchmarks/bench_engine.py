"""Engine benchmark: the naive per-problem loop versus the lockstep engine (Aer and fast path).

    make bench-engine            # or: .venv/bin/python benchmarks/bench_engine.py [--quick]

(a) 100 weighted 12-node 3-regular MaxCut problems of one shape at p=2: the loop a user
    would otherwise write (qiskit-algorithms QAOA + COBYLA(maxiter=100) + Aer SamplerV2,
    one problem at a time, run on a sample of the problems because it is slow) versus the
    engine with Aer's EstimatorV2 as evaluator and the engine with the fast diagonal path,
    with and without warm starts (parameter transfer from the batch's pilot problems).
    Then the angle library (issue 15), on weight distributions other than the benchmark's
    too: a first run on a fresh library (an SQLite intake database in a temporary folder),
    then a second run of 100 problems on a *different* 12-node 3-regular graph (a new
    shape of the same class), with the default two warm pilots and with the economy
    setting's one (not recorded), each beside the engine without a library on the same problems; the
    same for QUBO and portfolio shapes and for p=1 and p=3.
(c) cost per evaluation at 12 and 16 nodes, p=2: Aer EstimatorV2 with 1 and 100
    parameter sets per call, the fast path (integer and real weights), and QOKit's
    Python simulator from its own environment (`make .venv-qokit`; it pins an older
    qiskit, and its C simulator needs a separate build that PyPI does not ship).
(b) the pipeline's own overhead: 1,000 mixed problems through `qhopper run` versus the
    engine alone, run from bench_pipeline.py (which `make bench-pipeline` runs by itself).
(a) and (c) run in one process on one core, medians where repeated; ratios are taken
within this run. --skip-pipeline leaves (b) out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.backends import get_backend
from pipeline.formulation import Formulation, formulate
from pipeline.intake import IntakeStore
from pipeline.model import MaxCutSpec, PortfolioSpec, ProblemSpec, QuboSpec
from pipeline.qaoa.angle_store import AngleLibrary, plan_for, record_batch
from pipeline.qaoa.angles import DEFAULT_WARM_PILOTS
from pipeline.qaoa.evaluators import BatchProblem, DiagonalEvaluator, PrimitiveEvaluator
from pipeline.qaoa.lockstep import optimise_batch
from pipeline.qaoa.shapes import shape_of
from pipeline.qaoa.starts import PILOTS
from pipeline.qaoa.templates import CompiledTemplate, compile_template

BACKEND = get_backend("aer", 24)


def regular_graph(n: int, degree: int, rng: random.Random) -> list[tuple[int, int]]:
    while True:
        stubs = [v for v in range(n) for _ in range(degree)]
        rng.shuffle(stubs)
        edges = {(min(a, b), max(a, b)) for a, b in zip(stubs[::2], stubs[1::2], strict=True)}
        if len(edges) == n * degree // 2 and all(a != b for a, b in edges):
            return sorted(edges)


WEIGHTS = {
    "uniform [0.1, 1]": lambda rng: round(rng.uniform(0.1, 1.0), 6),  # the benchmark's
    "integer 1..10": lambda rng: rng.randint(1, 10),
    "exponential": lambda rng: round(rng.expovariate(1.0) + 1e-3, 6),
}


def problems_of_one_shape(
    n: int, count: int, seed: int, integer: bool, weights: str | None = None
) -> list[MaxCutSpec]:
    rng = random.Random(seed)
    graph = regular_graph(n, 3, rng)
    specs = []
    for _ in range(count):
        if weights is not None:
            weight = lambda: WEIGHTS[weights](rng)  # noqa: E731
        else:
            weight = (
                (lambda: rng.randint(1, 10))
                if integer
                else (lambda: round(rng.uniform(0.1, 1.0), 6))
            )
        specs.append(
            MaxCutSpec.model_validate(
                {"kind": "maxcut", "n": n, "edges": [[u, v, weight()] for u, v in graph]}
            )
        )
    return specs


def exact_optimum(formulation: Formulation) -> float:
    """The best feasible objective, in the problem's sense."""
    bits = np.array(list(itertools.product([0, 1], repeat=formulation.qubo.n)), dtype=np.int8)
    values = formulation.objective(bits)[formulation.feasible(bits)]
    return float(values.max() if formulation.sense == "max" else values.min())


@dataclass
class Figures:
    label: str
    seconds_per_problem: float
    evaluations: float
    expectation_ratio: float
    best_sample_ratio: float


def naive_loop(specs: list[MaxCutSpec], optima: list[float], reps: int) -> Figures:
    """qiskit-algorithms QAOA with COBYLA on Aer's SamplerV2, one problem at a time."""
    from qiskit.quantum_info import SparsePauliOp
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import SamplerV2
    from qiskit_algorithms import QAOA
    from qiskit_algorithms.optimizers import COBYLA

    # What a user of the loop writes: the preset pass manager (it unrolls the QAOA gate).
    pass_manager = generate_preset_pass_manager(optimization_level=1, backend=AerSimulator())
    times, evaluations, expectation, best = [], [], [], []
    for spec, optimum in zip(specs, optima, strict=True):
        started = time.perf_counter()
        total = sum(e[2] for e in spec.edges)
        operator = SparsePauliOp.from_sparse_list(
            [("ZZ", [u, v], w / 2) for u, v, w in spec.edges], spec.n
        )
        counter = {"evaluations": 0}

        def count(*_: object, counter: dict[str, int] = counter) -> None:
            counter["evaluations"] += 1

        qaoa = QAOA(
            SamplerV2(default_shots=1024, seed=7),
            COBYLA(maxiter=100),
            reps=reps,
            transpiler=pass_manager,
            callback=count,
        )
        result = qaoa.compute_minimum_eigenvalue(operator)
        times.append(time.perf_counter() - started)
        evaluations.append(counter["evaluations"])
        expectation.append((total / 2 - float(np.real(result.eigenvalue))) / optimum)
        bits = result.best_measurement["bitstring"][::-1]
        cut = sum(w for u, v, w in spec.edges if bits[u] != bits[v])
        best.append(cut / optimum)
    return Figures(
        "naive loop (qiskit-algorithms QAOA + COBYLA, Aer)",
        statistics.median(times),
        statistics.median(evaluations),
        statistics.mean(expectation),
        statistics.mean(best),
    )


def engine(
    specs: list[MaxCutSpec],
    optima: list[float],
    reps: int,
    evaluator: str,
    group: int = 0,
    planned: bool = False,
) -> Figures:
    """The lockstep engine on the whole batch, or (``group``) on groups of that many.

    Groups of PILOTS problems switch parameter transfer off: every problem is a pilot
    that scans the angle grid and refines with the full Newton stencil itself.
    ``planned``: start from the plan the run core gives a batch on a fresh angle library
    (the published angles); otherwise from the grid, as before the library.
    """
    formulations = [formulate(s) for s in specs]
    problems = [BatchProblem(f"p{i}", f, 1024) for i, f in enumerate(formulations)]
    shape = shape_of(formulations[0].ising, reps, BACKEND.target.label)
    template = compile_template(shape, BACKEND, "bench")
    size = group or len(problems)
    started = time.perf_counter()
    plan = plan_for(None, "maxcut", shape) if planned else None
    answers = [
        answer
        for start in range(0, len(problems), size)
        for answer in optimise_batch(
            template,
            problems[start : start + size],
            BACKEND,
            max_iterations=40,
            seed=7,
            evaluator=evaluator,
            start=plan,
        )
    ]
    elapsed = time.perf_counter() - started
    label = f"engine, {evaluator} evaluator"
    if group:
        label += f", no warm starts (groups of {group})"
    label += ", published angles (as runs start)" if planned else ", grid start"
    return Figures(
        label,
        elapsed / len(specs),
        statistics.median(a.evaluations for a in answers),
        statistics.mean(a.expected_objective / o for a, o in zip(answers, optima, strict=True)),
        statistics.mean(a.objective / o for a, o in zip(answers, optima, strict=True)),
    )


def part_a(count: int, naive_count: int, reps: int) -> float:
    specs = problems_of_one_shape(12, count, seed=2026, integer=False)
    optima = [exact_optimum(formulate(s)) for s in specs]
    optimise_batch(  # warm the numba cache and Aer so start-up is not measured
        compile_template(shape_of(formulate(specs[0]).ising, reps, "aer"), BACKEND, "w"),
        [BatchProblem("w", formulate(specs[0]), 16)],
        BACKEND,
        2,
        1,
        evaluator="fast",
    )
    rows = [
        naive_loop(specs[:naive_count], optima[:naive_count], reps),
        engine(specs, optima, reps, "estimator"),
        engine(specs, optima, reps, "fast", group=PILOTS),
        engine(specs, optima, reps, "fast"),
        engine(specs, optima, reps, "fast", planned=True),
    ]
    print(
        f"\n(a) {count} weighted 12-node 3-regular MaxCut problems of one shape, p={reps}"
        f" (naive loop on the first {naive_count}; weights uniform in [0.1, 1])"
    )
    print(
        f"{'method':72} {'s/problem':>10} {'evals':>7} {'E ratio':>8} {'best ratio':>10} {'speed-up':>9}"
    )
    for row in rows:
        print(
            f"{row.label:72} {row.seconds_per_problem:10.4f} {row.evaluations:7.0f} "
            f"{row.expectation_ratio:8.4f} {row.best_sample_ratio:10.4f} "
            f"{rows[0].seconds_per_problem / row.seconds_per_problem:8.1f}x"
        )
    return rows[0].seconds_per_problem


def qubo_specs(n: int, count: int, seed: int, graph_seed: int = 0) -> list[QuboSpec]:
    """Random QUBOs on one interaction graph (half the pairs), normal coefficients."""
    graph = np.random.default_rng(graph_seed)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if graph.random() < 0.5]
    rng = np.random.default_rng(seed)
    return [
        QuboSpec.model_validate(
            {
                "kind": "qubo",
                "n": n,
                "sense": "min",
                "linear": [[i, float(rng.normal())] for i in range(n)],
                "quadratic": [[i, j, float(rng.normal())] for i, j in pairs],
            }
        )
        for _ in range(count)
    ]


def portfolio_specs(n: int, count: int, seed: int) -> list[PortfolioSpec]:
    rng = np.random.default_rng(seed)
    specs = []
    for _ in range(count):
        factors = rng.normal(0, 0.2, (n, 2))
        sigma = (factors @ factors.T + 0.01 * np.eye(n)).round(6)
        specs.append(
            PortfolioSpec.model_validate(
                {
                    "kind": "portfolio",
                    "mu": rng.uniform(0, 0.2, n).round(4).tolist(),
                    "sigma": sigma.tolist(),
                    "budget": n // 2,
                    "risk": 0.5,
                }
            )
        )
    return specs


def ceiling(specs: list[ProblemSpec], optima: list[float], reps: int, starts: int = 8) -> float:
    """The best mean expectation ratio any angles reach at this depth: what no engine beats.

    Each problem's angles are optimised on its own (L-BFGS-B on the exact expectation) from
    the published fixed angles where they apply and ``starts`` random angle sets; the best
    local optimum counts.
    """
    from scipy.optimize import minimize

    formulations = [formulate(s) for s in specs]
    problems = [BatchProblem(f"p{i}", f, 1) for i, f in enumerate(formulations)]
    shape = shape_of(formulations[0].ising, reps, BACKEND.target.label)
    evaluator = DiagonalEvaluator(compile_template(shape, BACKEND, "ceiling"), problems)
    rng = np.random.default_rng(11)
    plan = plan_for(None, formulations[0].kind, shape)
    known = [np.array(c.gammas + c.betas) for c in plan.candidates]
    low, high = [0.0] * reps + [-np.pi / 2] * reps, [1.5] * reps + [np.pi / 2] * reps
    ratios = []
    for b, formulation in enumerate(formulations):
        row = np.array([b])

        def energy(theta: np.ndarray, row: np.ndarray = row) -> float:
            sets = theta.reshape(1, 1, 2 * reps)
            values = evaluator.energies(row, sets[..., :reps].copy(), sets[..., reps:].copy())
            return float(values[0, 0])

        tries = known + [rng.uniform(low, high) for _ in range(starts)]
        best = min(minimize(energy, x0, method="L-BFGS-B").fun for x0 in tries)
        ising = formulation.ising
        ratios.append(ising.sign * (ising.constant + evaluator.scale[b] * best) / optima[b])
    return statistics.fmean(ratios)


@dataclass
class LibraryFigures:
    label: str
    seconds_per_problem: float
    mean_evaluations: float
    median_evaluations: float
    expectation_ratio: float
    optimum_sampled: float  # share of problems whose best sample is the optimum
    started_from: str


def library_run(
    library: AngleLibrary | None,
    specs: list[ProblemSpec],
    optima: list[float],
    reps: int,
    label: str,
    warm_pilots: int = DEFAULT_WARM_PILOTS,
    record: bool = True,
) -> LibraryFigures:
    """One batch through the engine's fast path: plan from the library, optimise, record.

    The plan look-up and the write-back are timed with the batch (the run core does both);
    without a library the engine scans its grid, as before issue 15.
    """
    formulations = [formulate(s) for s in specs]
    problems = [BatchProblem(f"p{i}", f, 1024) for i, f in enumerate(formulations)]
    shape = shape_of(formulations[0].ising, reps, BACKEND.target.label)
    template = compile_template(shape, BACKEND, "bench")
    kind = formulations[0].kind
    started = time.perf_counter()
    plan = plan_for(library, kind, shape, warm_pilots=warm_pilots) if library is not None else None
    answers = optimise_batch(template, problems, BACKEND, 40, 7, evaluator="fast", start=plan)
    source = plan.candidates[0].source if plan is not None and plan.candidates else "grid"
    if library is not None and record:
        record_batch(library, kind, shape, answers, optima, source)
    elapsed = time.perf_counter() - started
    evaluations = [a.evaluations for a in answers]
    return LibraryFigures(
        label,
        elapsed / len(specs),
        statistics.fmean(evaluations),
        statistics.median(evaluations),
        statistics.fmean(a.expected_objective / o for a, o in zip(answers, optima, strict=True)),
        statistics.fmean(
            abs(a.objective - o) <= 1e-9 * max(1.0, abs(o))
            for a, o in zip(answers, optima, strict=True)
        ),
        source,
    )


ECONOMY = 1  # warm pilots in the economy setting (see pipeline.qaoa.angles)


def library_workload(
    title: str, first: list[ProblemSpec], second: list[ProblemSpec], reps: int, naive_s: float
) -> None:
    """A first run on a fresh library, a second run of another shape of the same class."""
    first_optima = [exact_optimum(formulate(s)) for s in first]
    second_optima = [exact_optimum(formulate(s)) for s in second]
    with tempfile.TemporaryDirectory() as home:
        store = IntakeStore.open(f"sqlite:///{home}/intake.db")
        try:
            library = AngleLibrary(store.engine)
            rows = [
                library_run(library, first, first_optima, reps, "first run, fresh library"),
                library_run(None, first, first_optima, reps, "  same problems, no library (grid)"),
                library_run(
                    library,
                    second,
                    second_optima,
                    reps,
                    "second run, economy (not recorded)",
                    ECONOMY,
                    record=False,
                ),
                library_run(library, second, second_optima, reps, "second run, another graph"),
                library_run(
                    None, second, second_optima, reps, "  same problems, no library (grid)"
                ),
            ]
        finally:
            store.close()
    print(f"\n{title}, p={reps}, {len(first)} problems a run")
    print(
        f"{'run':36} {'start':>8} {'evals mean':>10} {'median':>6} {'E ratio':>8} "
        f"{'best=opt':>8} {'s/problem':>10} {'vs naive':>9}"
    )
    for row in rows:
        print(
            f"{row.label:36} {row.started_from:>8} {row.mean_evaluations:10.1f} "
            f"{row.median_evaluations:6.0f} {row.expectation_ratio:8.4f} "
            f"{row.optimum_sampled:8.0%} {row.seconds_per_problem:10.5f} "
            f"{naive_s / row.seconds_per_problem:8.0f}x"
        )


def graph_sweep(count: int, seeds: range, reps: int = 2) -> None:
    """Second runs on several other graphs of the class, each beside its ceiling.

    One first run (the benchmark's graph, seed 2026) fills a fresh library; every other
    graph then runs as a class's second run (not recorded, so each sees the same library)
    and without a library; the ceiling is the best ratio any angles reach at this depth.
    """
    first = problems_of_one_shape(12, count, seed=2026, integer=False)
    first_optima = [exact_optimum(formulate(s)) for s in first]
    print(
        f"\n(a, graphs) second runs on other 12-node 3-regular graphs, p={reps}, {count} problems"
        " each, weights uniform [0.1, 1]; ceiling: each problem's own best angles"
        " (multi-start L-BFGS-B on the exact expectation)"
    )
    print(
        f"{'graph seed':>10} {'evals mean':>10} {'E ratio':>8} {'no library':>10} "
        f"{'ceiling':>8} {'vs ceiling':>10}"
    )
    with tempfile.TemporaryDirectory() as home:
        store = IntakeStore.open(f"sqlite:///{home}/intake.db")
        try:
            library = AngleLibrary(store.engine)
            row = library_run(library, first, first_optima, reps, "first")
            top = ceiling(first, first_optima, reps)
            print(
                f"{'2026 (1st)':>10} {row.mean_evaluations:10.1f} {row.expectation_ratio:8.4f}"
                f" {'':>10} {top:8.4f} {row.expectation_ratio - top:+10.4f}"
            )
            for seed in seeds:
                specs = problems_of_one_shape(12, count, seed=seed, integer=False)
                optima = [exact_optimum(formulate(s)) for s in specs]
                row = library_run(library, specs, optima, reps, "second", record=False)
                grid = library_run(None, specs, optima, reps, "grid")
                top = ceiling(specs, optima, reps)
                print(
                    f"{seed:>10} {row.mean_evaluations:10.1f} {row.expectation_ratio:8.4f}"
                    f" {grid.expectation_ratio:10.4f} {top:8.4f}"
                    f" {row.expectation_ratio - top:+10.4f}",
                    flush=True,
                )
        finally:
            store.close()


def part_a_library(count: int, naive_s: float, quick: bool) -> None:
    """The angle library on MaxCut (three weight distributions), p=1 and 3, QUBO, portfolio."""
    print(
        "\n(a, library) the angle library: first run on a fresh library, second run on a"
        " different graph of the same class; 'vs naive' divides the naive loop's s/problem"
        " (MaxCut p=2, above) by the row's"
    )
    for weights in WEIGHTS:
        library_workload(
            f"12-node 3-regular MaxCut, weights {weights}",
            problems_of_one_shape(12, count, seed=2026, integer=False, weights=weights),
            problems_of_one_shape(12, count, seed=2027, integer=False, weights=weights),
            2,
            naive_s,
        )
    depths = (1,) if quick else (1, 3)
    for reps in depths:
        library_workload(
            "12-node 3-regular MaxCut, weights integer 1..10",
            problems_of_one_shape(12, count, seed=2026, integer=True),
            problems_of_one_shape(12, count, seed=2027, integer=True),
            reps,
            naive_s,
        )
    library_workload(
        "10-variable QUBO (one interaction graph, normal coefficients; second run: new ones)",
        list(qubo_specs(10, count, seed=1)),
        list(qubo_specs(10, count, seed=2)),
        2,
        naive_s,
    )
    library_workload(
        "10-asset portfolio, budget 5 (second run: new problems)",
        list(portfolio_specs(10, count, seed=1)),
        list(portfolio_specs(10, count, seed=2)),
        2,
        naive_s,
    )


def per_evaluation(
    template: CompiledTemplate,
    problems: list[BatchProblem],
    sets_per_call: int,
    evaluator: str,
    repeats: int,
) -> float:
    engine_ = (
        PrimitiveEvaluator(template, problems, BACKEND, 1)
        if evaluator == "aer"
        else DiagonalEvaluator(template, problems)
    )
    rng = np.random.default_rng(0)
    rows = np.arange(len(problems))
    samples = []
    for _ in range(repeats):
        gammas = rng.uniform(0, 1, (len(problems), sets_per_call, template.shape.reps))
        betas = rng.uniform(0, 1, (len(problems), sets_per_call, template.shape.reps))
        started = time.perf_counter()
        engine_.energies(rows, gammas, betas)
        samples.append((time.perf_counter() - started) / (len(problems) * sets_per_call))
    return statistics.median(samples) * 1e3


def qokit_per_evaluation(n: int, edges: list[list[float]], reps: int, repeats: int) -> str:
    """QOKit's Python simulator, run in its own environment (it pins an older qiskit)."""
    python = Path(__file__).resolve().parent.parent / ".venv-qokit" / "bin" / "python"
    if not python.exists():
        return "not measured: run `make .venv-qokit` first"
    request = json.dumps({"n": n, "edges": edges, "reps": reps, "repeats": repeats})
    completed = subprocess.run(
        [str(python), str(Path(__file__).with_name("qokit_eval.py"))],
        input=request,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return f"{float(completed.stdout):.3f}"


def part_c(reps: int, repeats: int) -> None:
    print(f"\n(c) milliseconds per evaluation, p={reps} (median of {repeats} calls)")
    print(
        f"{'n':>3} {'Aer 1 set/call':>15} {'Aer 100 sets/call':>18} {'fast, int weights':>18} "
        f"{'fast, real weights':>19}   QOKit"
    )
    for n in (12, 16):
        real = [formulate(s) for s in problems_of_one_shape(n, 100, seed=n, integer=False)]
        integer = [formulate(s) for s in problems_of_one_shape(n, 100, seed=n, integer=True)]
        template = compile_template(
            shape_of(real[0].ising, reps, BACKEND.target.label), BACKEND, "bench"
        )
        one = [BatchProblem("p", real[0], 1)]
        hundred = [BatchProblem(f"p{i}", f, 1) for i, f in enumerate(real)]
        aer_one = per_evaluation(template, one, 1, "aer", repeats)
        aer_hundred = per_evaluation(template, one, 100, "aer", max(3, repeats // 5))
        fast_int = per_evaluation(
            template,
            [BatchProblem(f"p{i}", f, 1) for i, f in enumerate(integer)],
            9,
            "fast",
            repeats,
        )
        fast_real = per_evaluation(template, hundred, 9, "fast", repeats)
        spec = problems_of_one_shape(n, 1, seed=n, integer=False)[0]
        qokit = qokit_per_evaluation(n, [list(e) for e in spec.edges], reps, repeats)
        print(
            f"{n:3} {aer_one:15.3f} {aer_hundred:18.3f} {fast_int:18.3f} {fast_real:19.3f}   {qokit}"
        )
        print(
            f"    fast path vs Aer at 100 sets/call: {aer_hundred / fast_real:.1f}x (real weights),"
            f" {aer_hundred / fast_int:.1f}x (integer weights)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer problems and repeats (a smoke run)"
    )
    parser.add_argument("--skip-pipeline", action="store_true", help="leave part (b) out")
    args = parser.parse_args()
    count, naive_count, repeats = (20, 3, 5) if args.quick else (100, 10, 15)
    naive_s = part_a(count, naive_count, reps=2)
    part_a_library(count, naive_s, args.quick)
    graph_sweep(count, range(2027, 2029 if args.quick else 2032))
    if not args.skip_pipeline:
        part_b(args.quick)
    part_c(reps=2, repeats=repeats)


def part_b(quick: bool) -> None:
    """bench_pipeline.py in its own process: it starts servers, clusters and runs."""
    print("\n(b) pipeline overhead (benchmarks/bench_pipeline.py)", flush=True)
    command = [sys.executable, str(Path(__file__).with_name("bench_pipeline.py"))]
    if quick:
        command += ["--problems", "200", "--repeats", "1"]
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
