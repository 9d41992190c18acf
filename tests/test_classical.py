"""CP-SAT path against independent brute force, published optima and tight time limits.

Answers are judged by tests/truth.py, which reads the raw records and shares no code with
pipeline/: a formulation or scaling bug cannot hide behind it.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import truth
from factories import problem
from qaoa_dataset import load_graphs

from pipeline.classical import ClassicalAnswer, solve_classical, solve_plain
from pipeline.classical.heuristics import improve, kind_start, search, start
from pipeline.config import LimitSettings
from pipeline.formulation import bits_to_string, formulate
from pipeline.model import ProblemSpec, QuboSpec, spec_from_record
from pipeline.readers import read_path

BENCHMARKS = Path(__file__).resolve().parent.parent / "data" / "benchmarks"
WORKERS = 2
Record = dict[str, Any]


def record_of(spec: ProblemSpec) -> Record:
    """A spec's own fields as a raw record, for the oracle to read."""
    return spec.model_dump(mode="json", exclude_none=True)


def solved(record: Record, limit: float, **options: Any) -> ClassicalAnswer:
    return solve_classical(formulate(spec_from_record(record)), limit, **options)


def check_answer(record: Record, answer: ClassicalAnswer) -> None:
    """What every answer must satisfy, optimal or not."""
    n = truth.variables(record)
    assert len(answer.solution) == n and set(answer.solution) <= {"0", "1"}
    assert answer.objective == pytest.approx(
        truth.objective(record, answer.solution), rel=1e-9, abs=1e-9
    )
    bits = [[int(c) for c in answer.solution]]
    assert answer.objective == float(formulate(spec_from_record(record)).objective(bits)[0])
    if record["kind"] == "portfolio":
        assert answer.solution.count("1") == record["budget"]
    assert answer.feasible and truth.feasible(record, answer.solution)
    assert answer.wall_s > 0
    if answer.bound is not None:  # CP-SAT's bound, in the problem's own sense and units
        minimise = truth.sense(record) == "min"
        slack = 1e-9 * (1.0 + abs(answer.objective))
        assert (
            (answer.bound <= answer.objective + slack)
            if minimise
            else (answer.bound >= answer.objective - slack)
        )
    if answer.proven_optimal:
        assert answer.bound == pytest.approx(answer.objective, rel=1e-12, abs=1e-9)


# --- random small instances (tests/factories.py), one size per seed ------------------------


def maxcut_case(seed: int, decimals: int | None) -> Record:
    """2-12 nodes, each pair an edge with probability 0.6; integer weights in [-5, 9] or
    decimal ones in [-3, 5]; every fourth seed's edges unweighted."""
    weights = "unit" if seed % 4 == 0 else "int" if decimals is None else "decimal"
    span = (-5, 9) if decimals is None else (-3, 5)
    return problem(
        "maxcut",
        2 + seed % 11,
        seed=seed,
        density=0.6,
        weights=weights,
        span=span,
        decimals=decimals,
    )


def qubo_case(seed: int, sense: str) -> Record:
    """1-12 variables: linear terms on 70 % of them, quadratic ones (diagonal included) on
    half the pairs; integer coefficients in [-20, 20], 3-decimal ones every third seed."""
    weights = "decimal" if seed % 3 == 0 else "int"
    return problem(
        "qubo",
        1 + seed % 12,
        seed=seed,
        diagonal=True,
        weights=weights,
        span=(-20, 20),
        sense=sense,
    )


def portfolio_case(seed: int, decimals: int | None = 3) -> Record:
    """1-12 assets, any budget from 0 to all of them; ``decimals=None``: full precision."""
    return problem("portfolio", 1 + seed % 12, seed=seed, decimals=decimals)


SEEDS = range(12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 2], ids=["integer", "decimal"])
def test_maxcut_matches_brute_force(seed: int, decimals: int | None) -> None:
    record = maxcut_case(seed, decimals)
    answer = solved(record, 10.0, workers=WORKERS, seed=seed)
    check_answer(record, answer)
    assert answer.status == "OPTIMAL" and answer.proven_optimal
    assert answer.objective == pytest.approx(truth.brute_force(record), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("sense", ["min", "max"])
def test_qubo_matches_brute_force(seed: int, sense: str) -> None:
    record = qubo_case(seed, sense)
    answer = solved(record, 10.0, workers=WORKERS, seed=seed)
    check_answer(record, answer)
    assert answer.status == "OPTIMAL" and answer.proven_optimal
    assert answer.objective == pytest.approx(truth.brute_force(record), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_portfolio_matches_brute_force_with_hard_budget(seed: int) -> None:
    record = portfolio_case(seed)
    answer = solved(record, 10.0, workers=WORKERS, seed=seed)
    check_answer(record, answer)
    assert answer.status == "OPTIMAL" and answer.proven_optimal
    assert answer.objective == pytest.approx(truth.brute_force(record), abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_full_precision_floats_are_rounded_and_not_claimed_proven(seed: int) -> None:
    """17-digit floats cannot be scaled to exact integers: near-optimal, never 'proven'."""
    record = portfolio_case(100 + seed, decimals=None)
    answer = solved(record, 0.5, workers=WORKERS)
    check_answer(record, answer)
    assert not answer.proven_optimal and answer.bound is None  # a rounded model bounds nothing
    best = truth.brute_force(record)
    assert answer.objective == pytest.approx(best, rel=1e-4, abs=1e-6)


def test_seed_and_single_worker_reproduce() -> None:
    record = qubo_case(5, "min")
    first = solved(record, 5.0, workers=1, seed=3)
    second = solved(record, 5.0, workers=1, seed=3)
    assert (first.solution, first.objective) == (second.solution, second.objective)


def test_rejects_bad_limits() -> None:
    formulation = formulate(spec_from_record(qubo_case(1, "min")))
    with pytest.raises(ValueError):
        solve_classical(formulation, 0.0)
    with pytest.raises(ValueError):
        solve_classical(formulation, 1.0, workers=0)


# --- the tabu search that hints CP-SAT --------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_tabu_start_finds_small_optima_and_keeps_the_budget(seed: int) -> None:
    for record in (maxcut_case(seed, 2), qubo_case(seed, "max"), portfolio_case(seed)):
        formulation = formulate(spec_from_record(record))
        bits = start(formulation, 1.0, seed=seed)
        assert bool(formulation.feasible(bits))
        assert float(formulation.objective(bits)) == pytest.approx(
            truth.brute_force(record), abs=1e-9
        )


def test_tabu_search_is_reproducible_by_seed() -> None:
    """An unweighted cut has many optima: which one is found depends on the seed alone."""
    record = problem("maxcut", 60, seed=3, density=0.4, weights="unit")
    formulation = formulate(spec_from_record(record))
    linear, matrix = formulation.objective_qubo.minimisation_form()

    def found_by(seed: int) -> str:
        zeros = np.zeros(60, dtype=np.int8)
        return bits_to_string(search(linear, matrix, zeros, False, 5.0, seed).bits)

    found = {seed: found_by(seed) for seed in range(4)}
    assert len(set(found.values())) > 1
    assert all(found_by(seed) == bits for seed, bits in found.items())


def test_tabu_search_stops_when_it_stalls_not_at_its_budget() -> None:
    """Decimal weights too: rounding in the running value must not pass for progress."""
    for record in (qubo_case(3, "min"), portfolio_case(3)):
        formulation = formulate(spec_from_record(record))
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
    check_answer(record_of(spec), answer)
    assert answer.status == "OPTIMAL" and answer.proven_optimal
    assert answer.objective == pytest.approx(optimum, rel=1e-12)


def test_qaoa_dataset_max_cuts() -> None:
    """Every 10th connected 7-node graph of the QAOA dataset, against its listed max cut."""
    listed = optima("qaoa-dataset-v1-maxcut")
    graphs = load_graphs(7)[::10]
    assert len(graphs) > 80
    for graph in graphs:
        record = {"kind": "maxcut", "n": 7, "edges": [list(e) for e in graph.edges]}
        answer = solved(record, 10.0, workers=WORKERS)
        check_answer(record, answer)
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
    check_answer(record_of(spec), answer)
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
    record = problem("portfolio", 80, seed=7, decimals=4, budget=20, risk=0.5)
    answer = solved(record, 1e-9, workers=WORKERS)
    assert answer.status == "UNKNOWN" and not answer.proven_optimal
    check_answer(record, answer)


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
    check_answer(record_of(spec), answer)
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
    check_answer(record_of(records[0].spec), answer)
    assert answer.proven_optimal and answer.wall_s < 0.5


def test_plain_cpsat_is_the_unhinted_baseline() -> None:
    _sense, optimum = optima("biqmac-qubo")["gka/gka1b.sparse"]
    spec = read_spec("biqmac-qubo", "gka/gka1b.sparse")
    answer = solve_plain(formulate(spec), 10.0)
    check_answer(record_of(spec), answer)
    assert answer.proven_optimal and answer.objective == optimum
