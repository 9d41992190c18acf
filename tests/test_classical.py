"""CP-SAT path against independent brute force, published optima and tight time limits.

The brute-force evaluator below reads the raw spec lists and shares no code with
pipeline/: a formulation or scaling bug cannot hide behind it.
"""

from __future__ import annotations

import csv
import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from qaoa_dataset import load_graphs

from pipeline.classical import ClassicalAnswer, solve_classical, solve_plain
from pipeline.classical.heuristics import improve, kind_start, search, start
from pipeline.config import LimitSettings
from pipeline.formulation import bits_to_string, formulate
from pipeline.model import MaxCutSpec, PortfolioSpec, ProblemSpec, QuboSpec
from pipeline.readers import read_path

BENCHMARKS = Path(__file__).resolve().parent.parent / "data" / "benchmarks"
WORKERS = 2


# --- independent truth -------------------------------------------------------------


def all_bits(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=float).reshape(-1, n)


def evaluate(spec: ProblemSpec, x: np.ndarray) -> np.ndarray:
    """Objective of each row of ``x``, straight from the spec's lists."""
    if isinstance(spec, MaxCutSpec):
        value = np.zeros(len(x))
        for edge in spec.edges:
            weight = edge[2] if len(edge) == 3 else 1
            value += weight * (x[:, int(edge[0])] != x[:, int(edge[1])])
        return value
    if isinstance(spec, QuboSpec):
        value = np.full(len(x), float(spec.offset))
        for i, c in spec.linear:
            value += c * x[:, int(i)]
        for i, j, c in spec.quadratic:
            value += c * x[:, int(i)] * x[:, int(j)]
        return value
    mu, sigma = np.array(spec.mu, dtype=float), np.array(spec.sigma, dtype=float)
    return x @ mu - spec.risk * np.einsum("ki,ij,kj->k", x, sigma, x)


def brute_force(spec: ProblemSpec) -> float:
    n = len(spec.mu) if isinstance(spec, PortfolioSpec) else spec.n
    x = all_bits(n)
    if isinstance(spec, PortfolioSpec):
        x = x[x.sum(axis=1) == spec.budget]
    values = evaluate(spec, x)
    return float(
        values.min() if isinstance(spec, QuboSpec) and spec.sense == "min" else values.max()
    )


def check_answer(spec: ProblemSpec, answer: ClassicalAnswer) -> None:
    """What every answer must satisfy, optimal or not."""
    n = len(spec.mu) if isinstance(spec, PortfolioSpec) else spec.n
    assert len(answer.solution) == n and set(answer.solution) <= {"0", "1"}
    bits = np.array([[int(c) for c in answer.solution]], dtype=float)
    assert answer.objective == pytest.approx(float(evaluate(spec, bits)[0]), rel=1e-9, abs=1e-9)
    assert answer.objective == float(formulate(spec).objective(bits)[0])
    if isinstance(spec, PortfolioSpec):
        assert answer.solution.count("1") == spec.budget
    assert answer.feasible
    assert answer.wall_s > 0
    if answer.bound is not None:  # CP-SAT's bound, in the problem's own sense and units
        minimise = isinstance(spec, QuboSpec) and spec.sense == "min"
        slack = 1e-9 * (1.0 + abs(answer.objective))
        assert (
            (answer.bound <= answer.objective + slack)
            if minimise
            else (answer.bound >= answer.objective - slack)
        )
    if answer.proven_optimal:
        assert answer.bound == pytest.approx(answer.objective, rel=1e-12, abs=1e-9)


# --- random small instances --------------------------------------------------------


def random_maxcut(seed: int, decimals: int | None) -> MaxCutSpec:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 13))
    edges: list[list[int | float]] = []
    for u, v in itertools.combinations(range(n), 2):
        if rng.random() < 0.6:
            if decimals is None:
                edges.append([u, v, int(rng.integers(-5, 10))])
            else:
                edges.append([u, v, round(float(rng.uniform(-3, 5)), decimals)])
    if seed % 4 == 0:  # unweighted edges too
        edges = [e[:2] for e in edges]
    return MaxCutSpec(kind="maxcut", n=n, edges=edges)


def random_qubo(seed: int, sense: str) -> QuboSpec:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 13))
    linear = [[i, int(rng.integers(-20, 20))] for i in range(n) if rng.random() < 0.7]
    quadratic: list[list[int | float]] = [
        [i, j, int(rng.integers(-15, 15))]
        for i, j in itertools.combinations_with_replacement(range(n), 2)
        if rng.random() < 0.5
    ]
    if seed % 3 == 0:  # decimal coefficients
        quadratic = [[i, j, c + 0.25] for i, j, c in quadratic]
    offset = round(float(rng.uniform(-50, 50)), 3)
    return QuboSpec(
        kind="qubo", n=n, linear=linear, quadratic=quadratic, offset=offset, sense=sense
    )


def random_portfolio(seed: int, decimals: int | None = 3) -> PortfolioSpec:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 13))
    a = rng.normal(size=(n, n))
    sigma = a @ a.T / n
    mu = rng.uniform(-0.2, 1.0, n)
    risk = float(rng.choice([0.0, 0.5, 1.0, 2.5]))
    if decimals is not None:
        sigma, mu = sigma.round(decimals), mu.round(decimals)
    return PortfolioSpec(
        kind="portfolio",
        mu=[float(m) for m in mu],
        sigma=[[float(s) for s in row] for row in sigma],
        budget=int(rng.integers(0, n + 1)),
        risk=risk,
    )


SEEDS = range(12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 2], ids=["integer", "decimal"])
def test_maxcut_matches_brute_force(seed: int, decimals: int | None) -> None:
    spec = random_maxcut(seed, decimals)
    answer = solve_classical(formulate(spec), 10.0, workers=WORKERS, seed=seed)
    check_answer(spec, answer)
    assert answer.status == "OPTIMAL" and answer.proven_optimal
    assert answer.objective == pytest.approx(brute_force(spec), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("sense", ["min", "max"])
def test_qubo_matches_brute_force(seed: int, sense: str) -> None:
    spec = random_qubo(seed, sense)
    answer = solve_classical(formulate(spec), 10.0, workers=WORKERS, seed=seed)
    check_answer(spec, answer)
    assert answer.status == "OPTIMAL" and answer.proven_optimal
    assert answer.objective == pytest.approx(brute_force(spec), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_portfolio_matches_brute_force_with_hard_budget(seed: int) -> None:
    spec = random_portfolio(seed)
    answer = solve_classical(formulate(spec), 10.0, workers=WORKERS, seed=seed)
    check_answer(spec, answer)
    assert answer.status == "OPTIMAL" and answer.proven_optimal
    assert answer.objective == pytest.approx(brute_force(spec), abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_full_precision_floats_are_rounded_and_not_claimed_proven(seed: int) -> None:
    """17-digit floats cannot be scaled to exact integers: near-optimal, never 'proven'."""
    spec = random_portfolio(100 + seed, decimals=None)
    answer = solve_classical(formulate(spec), 2.0, workers=WORKERS)
    check_answer(spec, answer)
    assert not answer.proven_optimal and answer.bound is None  # a rounded model bounds nothing
    best = brute_force(spec)
    assert answer.objective == pytest.approx(best, rel=1e-4, abs=1e-6)


def test_seed_and_single_worker_reproduce() -> None:
    spec = random_qubo(5, "min")
    first = solve_classical(formulate(spec), 5.0, workers=1, seed=3)
    second = solve_classical(formulate(spec), 5.0, workers=1, seed=3)
    assert (first.solution, first.objective) == (second.solution, second.objective)


def test_rejects_bad_limits() -> None:
    formulation = formulate(random_qubo(1, "min"))
    with pytest.raises(ValueError):
        solve_classical(formulation, 0.0)
    with pytest.raises(ValueError):
        solve_classical(formulation, 1.0, workers=0)


# --- the tabu search that hints CP-SAT --------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_tabu_start_finds_small_optima_and_keeps_the_budget(seed: int) -> None:
    for spec in (random_maxcut(seed, 2), random_qubo(seed, "max"), random_portfolio(seed)):
        formulation = formulate(spec)
        bits = start(formulation, 1.0, seed=seed)
        assert bool(formulation.feasible(bits))
        assert float(formulation.objective(bits)) == pytest.approx(brute_force(spec), abs=1e-9)


def test_tabu_search_is_reproducible_by_seed() -> None:
    """An unweighted cut has many optima: which one is found depends on the seed alone."""
    rng = np.random.default_rng(3)
    edges = [[u, v] for u, v in itertools.combinations(range(60), 2) if rng.random() < 0.4]
    formulation = formulate(MaxCutSpec(kind="maxcut", n=60, edges=edges))
    linear, matrix = formulation.objective_qubo.minimisation_form()

    def found_by(seed: int) -> str:
        zeros = np.zeros(60, dtype=np.int8)
        return bits_to_string(search(linear, matrix, zeros, False, 5.0, seed).bits)

    found = {seed: found_by(seed) for seed in range(4)}
    assert len(set(found.values())) > 1
    assert all(found_by(seed) == bits for seed, bits in found.items())


def test_tabu_search_stops_when_it_stalls_not_at_its_budget() -> None:
    """Decimal weights too: rounding in the running value must not pass for progress."""
    for spec in (random_qubo(3, "min"), random_portfolio(3)):
        formulation = formulate(spec)
        start(formulation, 0.1)  # compiled and loaded before timing
        began = time.perf_counter()
        start(formulation, 60.0)
        assert time.perf_counter() - began < 5.0


def test_tabu_start_beats_descent_on_a_published_instance() -> None:
    """bqp100-1: 1-flip descent stops 3% short; the tabu search reaches the optimum."""
    _sense, optimum = optima("biqmac-qubo")["beasley/bqp100-1.sparse"]
    formulation = formulate(read_spec("biqmac-qubo", "beasley/bqp100-1.sparse"))
    assert float(formulation.objective(start(formulation, 0.0))) > optimum + 100
    assert float(formulation.objective(start(formulation, 2.0))) == optimum


# --- published optima --------------------------------------------------------------


def optima(folder: str) -> dict[str, tuple[str, float]]:
    with (BENCHMARKS / folder / "optima.csv").open(newline="") as handle:
        return {
            row["instance"]: (row["sense"], float(row["optimal_value"]))
            for row in csv.DictReader(handle)
        }


def read_spec(folder: str, instance: str) -> ProblemSpec:
    records = read_path(BENCHMARKS / folder / instance, LimitSettings())
    assert len(records) == 1 and records[0].ok, records[0].issues
    assert records[0].spec is not None
    return records[0].spec


PUBLISHED = [
    ("ciquab-karloff-maxcut", "Karloff/Karloff_6_3_1.txt"),
    ("biqmac-qubo", "gka/gka1b.sparse"),
    ("biqmac-qubo", "gka/gka2b.sparse"),
    ("biqmac-qubo", "gka/gka4b.sparse"),
    ("biqmac-qubo", "gka/gka9b.sparse"),
    ("biqmac-qubo", "gka/gka1a.sparse"),
    ("biqmac-qubo", "beasley/bqp50-1.sparse"),
    ("biqmac-qubo", "beasley/bqp50-4.sparse"),
]


@pytest.mark.parametrize(("folder", "instance"), PUBLISHED)
def test_published_optimum_is_proven(folder: str, instance: str) -> None:
    sense, optimum = optima(folder)[instance]
    spec = read_spec(folder, instance)
    assert (isinstance(spec, QuboSpec) and spec.sense == sense) or sense == "max"
    answer = solve_classical(formulate(spec), 30.0, workers=WORKERS)
    check_answer(spec, answer)
    assert answer.status == "OPTIMAL" and answer.proven_optimal
    assert answer.objective == pytest.approx(optimum, rel=1e-12)


def test_qaoa_dataset_max_cuts() -> None:
    """Every 10th connected 7-node graph of the QAOA dataset, against its listed max cut."""
    listed = optima("qaoa-dataset-v1-maxcut")
    graphs = load_graphs(7)[::10]
    assert len(graphs) > 80
    for graph in graphs:
        spec = MaxCutSpec(kind="maxcut", n=7, edges=[list(e) for e in graph.edges])
        answer = solve_classical(formulate(spec), 10.0, workers=WORKERS)
        check_answer(spec, answer)
        assert answer.proven_optimal
        assert answer.objective == listed[f"Graphs/graph7c.txt:{graph.number}"][1]


# --- time limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "instance"),
    [
        ("biqmac-qubo", "gka/gka1d.sparse"),
        ("biqmac-maxcut", "rudy/w01_100.0"),
        ("biqmac-maxcut", "ising/t3g6_5555"),
    ],
)
@pytest.mark.parametrize("limit", [1e-9, 0.05])
def test_hard_instance_under_tiny_limit_is_feasible_not_proven(
    folder: str, instance: str, limit: float
) -> None:
    sense, optimum = optima(folder)[instance]
    spec = read_spec(folder, instance)
    answer = solve_classical(formulate(spec), limit, workers=WORKERS)
    check_answer(spec, answer)
    assert not answer.proven_optimal
    assert answer.status in {"UNKNOWN", "FEASIBLE"}
    if limit < 1e-6:  # no time for CP-SAT at all: the heuristic fallback answers
        assert answer.status == "UNKNOWN"
    assert answer.objective >= optimum if sense == "min" else answer.objective <= optimum
    assert (answer.bound is not None) == (answer.status == "FEASIBLE")  # none without a solution
    if answer.bound is not None:
        assert answer.bound <= optimum if sense == "min" else answer.bound >= optimum
    assert answer.wall_s < 5.0


def test_portfolio_fallback_keeps_the_budget() -> None:
    rng = np.random.default_rng(7)
    n = 80
    a = rng.normal(size=(n, n))
    spec = PortfolioSpec(
        kind="portfolio",
        mu=[float(m) for m in rng.uniform(0, 1, n).round(3)],
        sigma=[[float(s) for s in row] for row in (a @ a.T / n).round(4)],
        budget=20,
        risk=0.5,
    )
    answer = solve_classical(formulate(spec), 1e-9, workers=WORKERS)
    assert answer.status == "UNKNOWN" and not answer.proven_optimal
    check_answer(spec, answer)


# --- the portfolio against published optima (issue 14) ---------------------------------

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"


def tolerance(n: int) -> float:
    """The issue's targets: within 0.1 % of the optimum up to 100 variables, else 0.5 %."""
    return 0.001 if n <= 100 else 0.005


def check_bound(sense: str, optimum: float, answer: ClassicalAnswer) -> None:
    """The bound is on the right side of the published optimum (and so of every answer)."""
    if answer.bound is None:
        return
    slack = 1e-9 * max(1.0, abs(optimum))
    if sense == "min":
        assert answer.bound <= optimum + slack <= answer.objective + 2 * slack
    else:
        assert answer.bound >= optimum - slack >= answer.objective - 2 * slack


HARD = [  # CP-SAT alone ends 16-79 % short at 2 s on these (benchmarks/bench_classical.py)
    ("biqmac-maxcut", "rudy/pm1s_80.0"),
    ("biqmac-maxcut", "ising/t2g10_5555"),
    ("biqmac-maxcut", "ising/ising2.5-100_5555"),
    ("biqmac-qubo", "beasley/bqp100-1.sparse"),
    ("biqmac-qubo", "be/be100.1.sparse"),
]


@pytest.mark.parametrize(("folder", "instance"), HARD)
def test_portfolio_comes_within_the_target_of_published_optima(folder: str, instance: str) -> None:
    sense, optimum = optima(folder)[instance]
    spec = read_spec(folder, instance)
    limit = 2.0
    answer = solve_classical(formulate(spec), limit, workers=1)
    check_answer(spec, answer)
    check_bound(sense, optimum, answer)
    n = len(answer.solution)
    assert abs(answer.objective - optimum) / max(1.0, abs(optimum)) <= tolerance(n)
    assert answer.found_s is not None and 0 <= answer.found_s <= answer.wall_s
    assert answer.wall_s < limit + 0.5  # the limit bounds every phase, model building included


@pytest.mark.parametrize(
    ("folder", "instance"), [*PUBLISHED[:4], ("biqmac-qubo", "beasley/bqp50-4.sparse")]
)
def test_bound_and_answer_on_the_right_sides_of_published_optima(
    folder: str, instance: str
) -> None:
    """Proven or cut short: no answer beats the published optimum, no bound falls short."""
    sense, optimum = optima(folder)[instance]
    formulation = formulate(read_spec(folder, instance))
    for limit in (0.05, 0.3, 5.0):
        answer = solve_classical(formulation, limit, workers=1)
        check_bound(sense, optimum, answer)
        if answer.proven_optimal:
            assert answer.objective == pytest.approx(optimum, rel=1e-12)


def test_spin_glass_needs_the_iterated_search() -> None:
    """t2g10_5555 (a 10x10 toroidal grid): single-flip tabu stalls 1.4 % short; the
    iterated search (perturbations, restarts) reaches the optimum."""
    _sense, optimum = optima("biqmac-maxcut")["ising/t2g10_5555"]
    formulation = formulate(read_spec("biqmac-maxcut", "ising/t2g10_5555"))
    found = improve(formulation, kind_start(formulation), 3.0, seed=0)
    assert float(formulation.objective(found.bits)) == optimum
    assert found.rounds > 1 and found.found_at is not None


@pytest.mark.parametrize("name", ["maxcut_3regular_24.rudy", "maxcut_3regular_40.rudy"])
def test_small_problems_are_proven_before_the_heuristic_runs(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's cuts: CP-SAT alone proves them in milliseconds, so the heuristic (whose
    compiled kernels may still need loading or compiling: 0.4-3 s) is never called."""
    records = read_path(SAMPLES / name, LimitSettings())
    assert records[0].spec is not None

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the heuristic ran")

    monkeypatch.setattr("pipeline.classical.cpsat.improve", refuse)
    answer = solve_classical(formulate(records[0].spec), 10.0, workers=1)
    check_answer(records[0].spec, answer)
    assert answer.proven_optimal and answer.wall_s < 0.5


def test_plain_cpsat_is_the_unhinted_baseline() -> None:
    _sense, optimum = optima("biqmac-qubo")["gka/gka1b.sparse"]
    spec = read_spec("biqmac-qubo", "gka/gka1b.sparse")
    answer = solve_plain(formulate(spec), 10.0)
    check_answer(spec, answer)
    assert answer.proven_optimal and answer.objective == optimum
