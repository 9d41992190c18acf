"""Engine benchmark: the naive per-problem loop versus the lockstep engine (Aer and fast path).

    make bench-engine            # or: .venv/bin/python benchmarks/bench_engine.py [--quick]

(a) 100 weighted 12-node 3-regular MaxCut problems of one shape at p=2: the loop a user
    would otherwise write (qiskit-algorithms QAOA + COBYLA(maxiter=100) + Aer SamplerV2,
    one problem at a time, run on a sample of the problems because it is slow) versus the
    engine with Aer's EstimatorV2 as evaluator and the engine with the fast diagonal path,
    with and without warm starts (parameter transfer from the batch's pilot problems).
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
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.backends import get_backend
from pipeline.engine.evaluators import BatchProblem, DiagonalEvaluator, PrimitiveEvaluator
from pipeline.engine.lockstep import PILOTS, optimise_batch
from pipeline.engine.shapes import shape_of
from pipeline.engine.templates import CompiledTemplate, compile_template
from pipeline.formulation import Formulation, formulate
from pipeline.model import MaxCutSpec

BACKEND = get_backend("aer", 24)


def regular_graph(n: int, degree: int, rng: random.Random) -> list[tuple[int, int]]:
    while True:
        stubs = [v for v in range(n) for _ in range(degree)]
        rng.shuffle(stubs)
        edges = {(min(a, b), max(a, b)) for a, b in zip(stubs[::2], stubs[1::2], strict=True)}
        if len(edges) == n * degree // 2 and all(a != b for a, b in edges):
            return sorted(edges)


def problems_of_one_shape(n: int, count: int, seed: int, integer: bool) -> list[MaxCutSpec]:
    rng = random.Random(seed)
    graph = regular_graph(n, 3, rng)
    specs = []
    for _ in range(count):
        weight = (
            (lambda: rng.randint(1, 10)) if integer else (lambda: round(rng.uniform(0.1, 1.0), 6))
        )
        specs.append(
            MaxCutSpec.model_validate(
                {"kind": "maxcut", "n": n, "edges": [[u, v, weight()] for u, v in graph]}
            )
        )
    return specs


def exact_optimum(formulation: Formulation) -> float:
    bits = np.array(list(itertools.product([0, 1], repeat=formulation.qubo.n)), dtype=np.int8)
    return float(formulation.objective(bits).max())


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
    specs: list[MaxCutSpec], optima: list[float], reps: int, evaluator: str, group: int = 0
) -> Figures:
    """The lockstep engine on the whole batch, or (``group``) on groups of that many.

    Groups of PILOTS problems switch parameter transfer off: every problem is a pilot
    that scans the angle grid and refines with the full Newton stencil itself.
    """
    formulations = [formulate(s) for s in specs]
    problems = [BatchProblem(f"p{i}", f, 1024) for i, f in enumerate(formulations)]
    template = compile_template(
        shape_of(formulations[0].ising, reps, BACKEND.target.label), BACKEND, "bench"
    )
    size = group or len(problems)
    started = time.perf_counter()
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
        )
    ]
    elapsed = time.perf_counter() - started
    label = f"engine, {evaluator} evaluator"
    if group:
        label += f", no warm starts (groups of {group})"
    return Figures(
        label,
        elapsed / len(specs),
        statistics.median(a.evaluations for a in answers),
        statistics.mean(a.expected_objective / o for a, o in zip(answers, optima, strict=True)),
        statistics.mean(a.objective / o for a, o in zip(answers, optima, strict=True)),
    )


def part_a(count: int, naive_count: int, reps: int) -> None:
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
    ]
    print(
        f"\n(a) {count} weighted 12-node 3-regular MaxCut problems of one shape, p={reps}"
        f" (naive loop on the first {naive_count}; weights uniform in [0.1, 1])"
    )
    print(
        f"{'method':58} {'s/problem':>10} {'evals':>7} {'E ratio':>8} {'best ratio':>10} {'speed-up':>9}"
    )
    for row in rows:
        print(
            f"{row.label:58} {row.seconds_per_problem:10.4f} {row.evaluations:7.0f} "
            f"{row.expectation_ratio:8.4f} {row.best_sample_ratio:10.4f} "
            f"{rows[0].seconds_per_problem / row.seconds_per_problem:8.1f}x"
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
    part_a(count, naive_count, reps=2)
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
