"""The quantum path: templates, Aer expectations against NumPy, answers against brute force,
and optimised p=1 expectations against the published QAOA dataset (a worker's quantum
chunk around them: test_workers.py)."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import truth
from factories import Kind, Seed, problem
from qaoa_dataset import load_graphs
from qiskit.primitives import BitArray

from pipeline.backends import get_backend
from pipeline.config import PriceSettings
from pipeline.formulation import Formulation, formulate, portfolio_penalty
from pipeline.model import MaxCutSpec, PortfolioSpec, QuboSpec
from pipeline.qaoa.evaluators import (
    BatchProblem,
    DiagonalEvaluator,
    PrimitiveEvaluator,
)
from pipeline.qaoa.lockstep import optimise_batch
from pipeline.qaoa.sampling import outcomes_as_integers
from pipeline.qaoa.shapes import shape_of
from pipeline.qaoa.templates import (
    CompiledTemplate,
    TemplateStore,
    build_ansatz,
    compile_template,
)

BACKEND = get_backend("aer", 16)
SPECS = {"maxcut": MaxCutSpec, "qubo": QuboSpec, "portfolio": PortfolioSpec}
Record = dict[str, Any]


def formulated(record: Record) -> Formulation:
    """The pipeline's formulation of a raw record; oracles read the record itself (tests/truth.py)."""
    return formulate(SPECS[record["kind"]].model_validate(record))


def variables(record: Record) -> int:
    return len(record["mu"]) if record["kind"] == "portfolio" else int(record["n"])


def bit_strings(n: int) -> list[str]:
    """Every assignment, index x -> the string whose character k is bit k of x."""
    return ["".join(str((x >> k) & 1) for k in range(n)) for x in range(2**n)]


def assert_exact_answer(record: Record, solution: str, objective: float) -> None:
    """The reported objective is the solution's, and the solution is optimal (tests/truth.py)."""
    assert truth.feasible(record, solution)
    assert objective == pytest.approx(truth.objective(record, solution), abs=1e-9)
    assert objective == pytest.approx(truth.brute_force(record), abs=1e-9)


def true_qaoa_expectation(record: Record, gammas: npt.ArrayLike, betas: npt.ArrayLike) -> float:
    """<psi|objective|psi> for the QAOA state at the given angles, built here with NumPy;
    for a constrained kind (portfolio), over its feasible outcomes, the distribution
    renormalised over them."""
    objective, feasible = outcome_table(record)
    probability = qaoa_probabilities(record, gammas, betas) * feasible
    return float(np.sum(probability * objective) / np.sum(probability))


def outcome_table(record: Record) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Every outcome's objective and feasibility (index x: bit k is variable k), from truth."""
    strings = bit_strings(variables(record))
    objective = np.array([truth.objective(record, s) for s in strings])
    return objective, np.array([truth.feasible(record, s) for s in strings])


def qaoa_probabilities(
    record: Record, gammas: npt.ArrayLike, betas: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """|psi|^2 of the QAOA state at the given angles (cost layer: :func:`qaoa_cost`), NumPy."""
    n = variables(record)
    psi = np.full(2**n, 2 ** (-n / 2), dtype=complex)
    for gamma, beta in zip(np.atleast_1d(gammas), np.atleast_1d(betas), strict=True):
        psi = psi * np.exp(-1j * gamma * qaoa_cost(record))
        rx = np.array([[np.cos(beta), -1j * np.sin(beta)], [-1j * np.sin(beta), np.cos(beta)]])
        tensor = psi.reshape([2] * n)
        for qubit in range(n):
            axis = n - 1 - qubit
            tensor = np.moveaxis(np.tensordot(rx, tensor, axes=([1], [axis])), 0, axis)
        psi = tensor.reshape(-1)
    return np.abs(psi) ** 2


def qaoa_cost(record: Record) -> npt.NDArray[np.float64]:
    """The cost layer's diagonal, index x = the string whose character k is bit k of x.

    The function the quantum path samples (the true objective, minus the budget penalty for
    a portfolio) as an energy to minimise, normalised so the RMS of its nonzero Ising
    coefficients (read off by Walsh projection) is 1, as the engine's angles assume; its
    constant dropped (a global phase). Built from tests/truth.py, not the engine.
    """
    n = variables(record)
    strings = bit_strings(n)
    sampled = np.array([truth.objective(record, s) for s in strings])
    if record["kind"] == "portfolio":
        counts = np.array([s.count("1") for s in strings])
        lam = portfolio_penalty(PortfolioSpec.model_validate(record))
        sampled -= lam * (counts - record["budget"]) ** 2
    energy = -sampled if truth.sense(record) == "max" else sampled
    z = 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    coefficients = [abs(np.mean(energy * z[:, i])) for i in range(n)]
    coefficients += [
        abs(np.mean(energy * z[:, i] * z[:, j])) for i, j in itertools.combinations(range(n), 2)
    ]
    floor = 1e-12 * (1.0 + np.abs(energy).max())
    nonzero = np.array([c for c in coefficients if c > floor])
    scale = float(np.sqrt(np.mean(nonzero**2))) if nonzero.size else 1.0
    return np.asarray((energy - energy.mean()) / scale, dtype=np.float64)


def numpy_qaoa_energy(
    formulation: Formulation, gammas: np.ndarray, betas: np.ndarray, scale: float
) -> float:
    psi, energy = numpy_qaoa_state(formulation, gammas, betas, scale)
    return float(np.real(np.vdot(psi, energy * psi)))


def numpy_qaoa_state(
    formulation: Formulation, gammas: np.ndarray, betas: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Independent statevector QAOA: diagonal phase from the QUBO itself, RX mixers by kron;
    the final state and the energy diagonal, index bit k = qubit k."""
    n = formulation.qubo.n
    states = np.array(list(itertools.product([0, 1], repeat=n)))[:, ::-1]  # index bit k = qubit k
    ising = formulation.ising
    energy = (ising.sign * formulation.qubo.evaluate(states) - ising.constant) / scale
    psi = np.full(2**n, 2 ** (-n / 2), dtype=complex)
    for gamma, beta in zip(gammas, betas, strict=True):
        psi = psi * np.exp(-1j * gamma * energy)
        rx = np.array([[np.cos(beta), -1j * np.sin(beta)], [-1j * np.sin(beta), np.cos(beta)]])
        tensor = psi.reshape([2] * n)
        for qubit in range(n):
            axis = n - 1 - qubit
            tensor = np.moveaxis(np.tensordot(rx, tensor, axes=([1], [axis])), 0, axis)
        psi = tensor.reshape(-1)
    return psi, energy


@pytest.mark.parametrize("kind", ["maxcut", "qubo"])  # flip-symmetric, and with a field
def test_exact_draws_follow_the_final_state(kind: str) -> None:
    """One shot at a time under 20,000 seeds: each outcome's frequency is its probability
    in an independent statevector (within 4 standard errors), complements included."""
    rng = np.random.default_rng(3)
    record = drawn("maxcut", 5, rng) if kind == "maxcut" else drawn("qubo", 5, rng)
    formulation = formulated(record)
    template = compile_template(shape_of(formulation.ising, 2, "aer"), BACKEND, "test")
    fast = DiagonalEvaluator(template, [BatchProblem("p", formulation, 1)])
    assert fast.simulator.symmetric is (kind == "maxcut")
    gammas, betas = np.array([0.4, 0.7]), np.array([0.6, 0.3])
    psi, _ = numpy_qaoa_state(formulation, gammas, betas, fast.scale[0])
    expected = np.abs(psi) ** 2
    counts = np.zeros(len(expected))
    draws = 20_000
    for seed in range(draws):
        (outcome,), _ = fast.simulator.draw(0, gammas, betas, 1, np.random.default_rng(seed))
        counts[outcome] += 1
    error = np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(counts / draws - expected) <= 4 * error + 1e-4), (counts, expected)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("reps", [1, 2])
def test_template_expectation_matches_numpy_statevector(seed: int, reps: int) -> None:
    rng = np.random.default_rng(seed)
    formulation = formulated(drawn("qubo", 5, rng))
    template = compile_template(shape_of(formulation.ising, reps, "aer"), BACKEND, "test")
    evaluator = PrimitiveEvaluator(template, [BatchProblem("p", formulation, 100)], BACKEND, seed)
    gammas = rng.uniform(-1, 1, (1, 3, reps))
    betas = rng.uniform(-1, 1, (1, 3, reps))
    energies = evaluator.energies(np.array([0]), gammas, betas)
    for s in range(3):
        expected = numpy_qaoa_energy(formulation, gammas[0, s], betas[0, s], evaluator.scale[0])
        assert energies[0, s] == pytest.approx(expected, abs=1e-9)


def drawn(kind: Kind, n: int, rng: np.random.Generator, **fields: Any) -> Record:
    """This module's random records (tests/factories.py), drawn from ``rng`` in turn: a QUBO's
    coefficients standard normal, on every variable and half the pairs; MaxCut weights 1 to 8
    on 40 % of the pairs; at least one pair each. Portfolios at low risk (0.02 on covariances
    of order one), half the assets by default."""
    if kind == "portfolio":
        return problem(kind, n, seed=rng, decimals=4, **({"budget": n // 2, "risk": 0.02} | fields))
    if kind == "qubo":
        options = {"weights": "normal", "linear_density": 1.0, "sense": "min"}
        return problem(kind, n, seed=rng, nonempty=True, **(options | fields))
    return problem(kind, n, seed=rng, nonempty=True, density=0.4, span=(1, 8), **fields)


def same_graph_maxcuts(
    n: int, graph: list[tuple[int, int]], count: int, rng: Seed = 0, **weights: Any
) -> list[Record]:
    """``count`` MaxCut problems on one graph (so one shape), each with its own weights drawn
    from ``rng`` (options of tests/factories.problem: ``weights``, ``span``)."""
    return [problem("maxcut", n, graph=graph, seed=rng, **weights) for _ in range(count)]


@pytest.mark.parametrize("kind", ["maxcut", "qubo", "portfolio"])
@pytest.mark.parametrize("reps", [1, 2, 3])
def test_fast_path_agrees_with_aer_to_1e9(kind: str, reps: int) -> None:
    rng = np.random.default_rng(reps * 10 + len(kind))
    formulations = [formulated(drawn(kind, 7, rng)) for _ in range(1)]
    template = compile_template(shape_of(formulations[0].ising, reps, "aer"), BACKEND, "test")
    problems = [BatchProblem("p", f, 100) for f in formulations]
    reference = PrimitiveEvaluator(template, problems, BACKEND, 0)
    fast = DiagonalEvaluator(template, problems)
    gammas = rng.uniform(-1.5, 1.5, (1, 6, reps))
    betas = rng.uniform(-1.5, 1.5, (1, 6, reps))
    rows = np.array([0])
    np.testing.assert_allclose(
        fast.energies(rows, gammas, betas), reference.energies(rows, gammas, betas), atol=1e-9
    )
    # No linear field: the simulator keeps half the states (E(x) = E(~x)), same numbers.
    assert fast.simulator.symmetric == (kind == "maxcut")


def test_real_weighted_maxcut_has_no_linear_field_and_agrees_with_aer() -> None:
    """Rounding in the QUBO-to-Ising cancellation must not invent a field of ~1e-16."""
    rng = np.random.default_rng(5)
    graph = [(i, (i + 1) % 9) for i in range(9)] + [(i, i + 4) for i in range(5)]
    record = problem("maxcut", 9, graph=graph, seed=rng, weights="float", span=(0.1, 1))
    formulation = formulated(record)
    assert not formulation.ising.h.any()
    bits = rng.integers(0, 2, (50, 9))
    spins = 1 - 2 * bits
    i, j = np.array(formulation.ising.pairs).T
    energy = formulation.ising.constant + (spins[:, i] * spins[:, j]) @ formulation.ising.J
    np.testing.assert_allclose(
        formulation.ising.sign * energy, formulation.objective(bits), atol=1e-9
    )
    template = compile_template(shape_of(formulation.ising, 2, "aer"), BACKEND, "test")
    assert template.shape.linear == ()
    problems = [BatchProblem("p", formulation, 100)]
    fast = DiagonalEvaluator(template, problems)
    assert fast.simulator.symmetric
    gammas = rng.uniform(-1.5, 1.5, (1, 6, 2))
    betas = rng.uniform(-1.5, 1.5, (1, 6, 2))
    rows = np.array([0])
    reference = PrimitiveEvaluator(template, problems, BACKEND, 0)
    np.testing.assert_allclose(
        fast.energies(rows, gammas, betas), reference.energies(rows, gammas, betas), atol=1e-9
    )


def test_fast_path_agrees_with_aer_across_a_batch_of_one_shape() -> None:
    rng = np.random.default_rng(3)
    graph = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 3)]
    specs = same_graph_maxcuts(6, graph, 5, rng, weights="normal")
    problems = [BatchProblem(f"p{i}", formulated(s), 100) for i, s in enumerate(specs)]
    template = compile_template(shape_of(problems[0].formulation.ising, 2, "aer"), BACKEND, "test")
    gammas = rng.uniform(-1, 1, (5, 4, 2))
    betas = rng.uniform(-1, 1, (5, 4, 2))
    rows = np.arange(5)
    expected = PrimitiveEvaluator(template, problems, BACKEND, 0).energies(rows, gammas, betas)
    np.testing.assert_allclose(
        DiagonalEvaluator(template, problems).energies(rows, gammas, betas), expected, atol=1e-9
    )


@pytest.mark.parametrize("evaluator", ["fast", "estimator"])
def test_both_evaluators_reach_the_same_optimum(evaluator: str) -> None:
    rng = np.random.default_rng(21)
    graph = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (0, 2)]
    specs = same_graph_maxcuts(5, graph, 5, rng, span=(1, 4))
    problems = [BatchProblem(f"p{i}", formulated(s), 256) for i, s in enumerate(specs)]
    template = compile_template(shape_of(problems[0].formulation.ising, 1, "aer"), BACKEND, "test")
    answers = optimise_batch(template, problems, BACKEND, 30, 1, evaluator=evaluator)
    assert {a.evaluator for a in answers} == {evaluator}
    # Only the fast path simulates on the worker; the Estimator's calls bill themselves.
    assert all((a.simulated_s > 0) == (evaluator == "fast") for a in answers)
    for record, answer in zip(specs, answers, strict=True):
        assert_exact_answer(record, answer.solution, answer.objective)
    # Warm starts: problems after the pilots skip the grid and need fewer evaluations.
    assert max(a.evaluations for a in answers[3:]) < min(a.evaluations for a in answers[:3])


def test_batch_answers_equal_brute_force_optima() -> None:
    rng = np.random.default_rng(11)
    graph = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 3), (1, 4)]
    specs = same_graph_maxcuts(6, graph, 6, rng, span=(1, 5))
    problems = [BatchProblem(f"p{i}", formulated(s), 512) for i, s in enumerate(specs)]
    template = compile_template(shape_of(problems[0].formulation.ising, 1, "aer"), BACKEND, "test")
    answers = optimise_batch(template, problems, BACKEND, max_iterations=20, seed=3)
    for record, answer in zip(specs, answers, strict=True):
        assert_exact_answer(record, answer.solution, answer.objective)
        assert answer.expected_objective <= answer.objective + 1e-9
        assert answer.evaluations > 0


@pytest.mark.parametrize("sense", ["min", "max"])
def test_qubo_answers_respect_the_sense(sense: str) -> None:
    rng = np.random.default_rng(5)
    record = drawn("qubo", 6, rng, sense=sense)
    formulation = formulated(record)
    template = compile_template(shape_of(formulation.ising, 1, "aer"), BACKEND, "test")
    (answer,) = optimise_batch(template, [BatchProblem("p", formulation, 1024)], BACKEND, 20, 1)
    assert_exact_answer(record, answer.solution, answer.objective)


def test_portfolio_answer_is_feasible_and_optimal() -> None:
    record = drawn("portfolio", 5, np.random.default_rng(8), budget=2)
    formulation = formulated(record)
    template = compile_template(shape_of(formulation.ising, 1, "aer"), BACKEND, "test")
    (answer,) = optimise_batch(template, [BatchProblem("p", formulation, 2048)], BACKEND, 20, 1)
    assert answer.feasible and answer.solution.count("1") == 2
    assert_exact_answer(record, answer.solution, answer.objective)


def _dataset_sample() -> list:
    rng = random.Random(1)
    chosen = []
    for n in range(3, 8):
        graphs = load_graphs(n)
        chosen += rng.sample(graphs, min(3, len(graphs)))
    return chosen


@pytest.mark.parametrize("graph", _dataset_sample(), ids=lambda g: f"n{g.n}-g{g.number}")
def test_optimised_p1_expectation_reaches_the_published_value(graph) -> None:
    record = {"kind": "maxcut", "n": graph.n, "edges": [list(e) for e in graph.edges]}
    formulation = formulated(record)
    template = compile_template(shape_of(formulation.ising, 1, "aer"), BACKEND, "test")
    (answer,) = optimise_batch(template, [BatchProblem("p", formulation, 256)], BACKEND, 40, 1)
    assert answer.expected_objective == pytest.approx(graph.optimised_p1, abs=1e-3)
    assert answer.objective == pytest.approx(graph.max_cut)
    assert_exact_answer(record, answer.solution, answer.objective)


def test_template_store_compiles_once_and_reuses(tmp_path: Path) -> None:
    formulation = formulated(drawn("qubo", 4, np.random.default_rng(0)))
    shape = shape_of(formulation.ising, 2, BACKEND.target.label)
    store = TemplateStore(tmp_path)
    first = store.get(shape, BACKEND)
    second = TemplateStore(tmp_path).get(shape, BACKEND)
    assert not first.reused and second.reused
    assert second.template.artifact_key == first.template.artifact_key
    assert list(store.root.glob("*.qpy")) == [store.path_for(first.template.artifact_key)]
    assert [p.name for p in second.template.expectation_circuit.parameters] == [
        p.name for p in first.template.expectation_circuit.parameters
    ]


def test_shots_decode_to_the_integers_qiskit_counts_give() -> None:
    rng = np.random.default_rng(3)
    for bits in (3, 8, 13, 21):
        packed = rng.integers(0, 256, (4, 50, (bits + 7) // 8), dtype=np.uint8)
        packed[..., 0] &= (1 << (bits % 8 or 8)) - 1  # BitArray keeps unused high bits zero
        measured = BitArray(packed, bits)
        decoded = outcomes_as_integers(measured)
        for position in range(4):
            assert set(decoded[position].tolist()) == set(measured.get_int_counts(loc=position))


@pytest.mark.parametrize("reps", [1, 2])
@pytest.mark.parametrize("linear", [False, True])
def test_aer_templates_equal_what_the_preset_pass_manager_gives(reps: int, linear: bool) -> None:
    """Aer's pass manager skips the preset one's plugin loading; the circuits are the same."""
    from qiskit.transpiler import generate_preset_pass_manager

    rng = np.random.default_rng(reps)
    spec = drawn("qubo", 6, rng) if linear else drawn("maxcut", 6, rng)
    ansatz = build_ansatz(shape_of(formulated(spec).ising, reps, "aer"))
    measured = ansatz.copy()
    measured.measure_all()
    preset = generate_preset_pass_manager(
        optimization_level=1,
        backend=BACKEND.target.simulator,  # type: ignore[attr-defined]
    )
    ours = BACKEND.target.pass_manager().run([ansatz, measured])
    assert ours == preset.run([ansatz, measured])  # gate for gate, same parameters
    assert "-basis" in BACKEND.target.label  # not the preset's artifacts


# -- problems with no cost terms (issue 11 item 5) -------------------------------------
NO_TERMS = {
    "maxcut-no-edges": {"kind": "maxcut", "n": 3, "edges": []},
    "maxcut-zero-weights": {"kind": "maxcut", "n": 4, "edges": [[0, 1, 0], [1, 2, 0.0], [2, 3, 0]]},
    "maxcut-one-node": {"kind": "maxcut", "n": 1, "edges": []},
    "qubo-offset-only": {"kind": "qubo", "n": 3, "offset": 2.5},
    "qubo-offset-only-max": {"kind": "qubo", "n": 2, "offset": -1.25, "sense": "max"},
    "qubo-zero-coupling": {"kind": "qubo", "n": 3, "quadratic": [[0, 1, 0]], "offset": 1},
    "qubo-linear-only": {"kind": "qubo", "n": 3, "linear": [[0, 1.5], [2, -2]], "offset": 0.5},
}


@pytest.mark.parametrize("evaluator", ["fast", "estimator"])
@pytest.mark.parametrize("name", list(NO_TERMS))
def test_a_problem_with_no_cost_terms_is_answered_exactly(name: str, evaluator: str) -> None:
    record = NO_TERMS[name]
    formulation = formulated(record)
    template = compile_template(shape_of(formulation.ising, 2, "aer"), BACKEND, "test")
    problems = [BatchProblem("p", formulation, 64), BatchProblem("q", formulation, 32)]
    answers = optimise_batch(template, problems, BACKEND, 10, 3, evaluator=evaluator)
    assert [a.problem_id for a in answers] == ["p", "q"]
    for answer in answers:
        assert answer.feasible and answer.evaluator == evaluator
        assert_exact_answer(record, answer.solution, answer.objective)
        exact = true_qaoa_expectation(record, answer.gammas, answer.betas)
        assert answer.expected_objective == pytest.approx(exact, abs=1e-9)


# -- expected_objective in the problem's own units (issue 11 item 6) --------------------
def expectation_cases() -> dict[str, list[Record]]:
    """Two problems of one shape per case, each kind and sense."""
    rng = np.random.default_rng(17)
    graph = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (1, 3)]
    qubo = drawn("qubo", 5, rng)
    pairs = qubo["quadratic"]

    def reweighted(sense: str) -> Record:
        return {
            **qubo,
            "sense": sense,
            "quadratic": [[i, j, float(rng.normal())] for i, j, _ in pairs],
        }

    # Returns far above the risk: the objective is >= 0 on every portfolio, feasible or not.
    positive = {**drawn("portfolio", 5, rng, budget=2), "mu": [1.0, 1.5, 2.0, 2.5, 3.0]}
    return {
        "maxcut": same_graph_maxcuts(5, graph, 2, rng, weights="float", span=(0.5, 3)),
        "qubo-min": [reweighted("min"), reweighted("min")],
        "qubo-max": [reweighted("max"), reweighted("max")],
        "qubo-no-sense": [{k: v for k, v in qubo.items() if k != "sense"}],
        "portfolio": [drawn("portfolio", 5, rng, budget=2), drawn("portfolio", 5, rng, budget=2)],
        "portfolio-positive": [positive],
    }


@pytest.mark.parametrize("evaluator", ["fast", "estimator"])
@pytest.mark.parametrize("case", list(expectation_cases()))
def test_expected_objective_is_the_true_objective_expectation(case: str, evaluator: str) -> None:
    """Exact everywhere, but for a constrained kind on a backend's primitive: there the
    feasible shots estimate it, within five standard errors (seeded: no flake)."""
    records = expectation_cases()[case]
    problems = [BatchProblem(f"p{i}", formulated(r), 128) for i, r in enumerate(records)]
    shape = shape_of(problems[0].formulation.ising, 2, "aer")
    assert all(shape_of(p.formulation.ising, 2, "aer") == shape for p in problems)
    template = compile_template(shape, BACKEND, "test")
    answers = optimise_batch(template, problems, BACKEND, 15, 4, evaluator=evaluator)
    for record, answer in zip(records, answers, strict=True):
        objective, feasible = outcome_table(record)
        values = objective[feasible]
        exact = true_qaoa_expectation(record, answer.gammas, answer.betas)
        tolerance = 1e-9 * (1 + max(map(abs, values)))
        if evaluator == "estimator" and record["kind"] == "portfolio":
            p = qaoa_probabilities(record, answer.gammas, answer.betas)[feasible]
            spread = np.sqrt(np.sum(p * (values - exact) ** 2) / p.sum())
            tolerance = 5 * spread / np.sqrt(128 * p.sum())
        assert answer.expected_objective == pytest.approx(exact, abs=tolerance)
        assert min(values) - 1e-9 <= answer.expected_objective <= max(values) + 1e-9


# -- a constrained kind's expectation is over its feasible outcomes (issue 23 item 4) ------
def qiskit_expectations(
    record: Record, gammas: npt.ArrayLike, betas: npt.ArrayLike
) -> tuple[float, float]:
    """(over the feasible outcomes, over all) expectation of the objective in the QAOA state,
    the state from qiskit's Statevector: H on every qubit, then per layer the cost as a
    DiagonalGate of exp(-i gamma cost) and RX(2 beta) on every qubit. Objective, feasibility
    and cost from tests/truth.py: nothing shared with the engine."""
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import DiagonalGate
    from qiskit.quantum_info import Statevector

    n = variables(record)
    cost = qaoa_cost(record)
    circuit = QuantumCircuit(n)
    circuit.h(range(n))
    for gamma, beta in zip(np.atleast_1d(gammas), np.atleast_1d(betas), strict=True):
        circuit.append(DiagonalGate(list(np.exp(-1j * gamma * cost))), range(n))
        circuit.rx(2 * beta, range(n))
    p = Statevector(circuit).probabilities()  # index bit k = qubit k = variable k
    objective, feasible = outcome_table(record)
    return float(p[feasible] @ objective[feasible] / p[feasible].sum()), float(p @ objective)


def flip_symmetric_portfolio() -> Record:
    """n = 2k and mu_i = q * (row sum of sigma): no linear field in the sampled QUBO, so the
    fast path keeps half the states (dyadic numbers keep the cancellation exact)."""
    sigma = np.full((4, 4), 0.125) + np.diag([0.25, 0.5, 0.125, 0.375])
    return {
        "kind": "portfolio",
        "mu": (0.5 * sigma.sum(axis=1)).tolist(),
        "sigma": sigma.tolist(),
        "budget": 2,
        "risk": 0.5,
    }


def constrained_cases() -> dict[str, Record]:
    rng = np.random.default_rng(23)
    return {
        # High returns, low risk: more assets than the budget look better, unconstrained.
        "rich": {**drawn("portfolio", 5, rng, budget=1), "mu": [2.0, 2.5, 3.0, 1.5, 1.0]},
        "plain": drawn("portfolio", 6, rng, budget=3),
        "symmetric": flip_symmetric_portfolio(),
    }


@pytest.mark.parametrize("case", list(constrained_cases()))
def test_a_portfolios_expectation_is_over_its_feasible_outcomes(case: str) -> None:
    """At arbitrary angles and at the optimised ones, the engine's expected objective is
    the feasible-conditional expectation of an independent qiskit statevector, never above
    the optimum (the whole distribution's can be: the operator's 1.0019)."""
    record = constrained_cases()[case]
    formulation = formulated(record)
    optimum = truth.brute_force(record)
    template = compile_template(shape_of(formulation.ising, 2, "aer"), BACKEND, "test")
    evaluator = DiagonalEvaluator(template, [BatchProblem("p", formulation, 64)])
    assert evaluator.simulator.symmetric == (case == "symmetric")
    gammas, betas = np.array([[0.35, 0.8]]), np.array([[0.5, 0.2]])
    energies = evaluator.energies(np.array([0]), gammas[:, None], betas[:, None])[:, 0]
    (found,) = evaluator.expected_objectives(gammas, betas, energies)
    feasible, whole = qiskit_expectations(record, gammas[0], betas[0])
    assert found == pytest.approx(feasible, rel=1e-9, abs=1e-12) and found <= optimum + 1e-12
    if case == "rich":
        assert whole > optimum  # what counting infeasible outcomes gave
    (answer,) = optimise_batch(
        template, [BatchProblem("p", formulation, 64)], BACKEND, 15, 4, evaluator="fast"
    )
    feasible, _ = qiskit_expectations(record, answer.gammas, answer.betas)
    assert answer.expected_objective == pytest.approx(feasible, rel=1e-9, abs=1e-12)
    assert answer.expected_objective <= optimum + 1e-12


def test_a_flip_symmetric_state_observes_any_bit_count() -> None:
    """The kept half stands for its complements, which have n - ones bits set: every count of
    ones, against an independent statevector (a portfolio is symmetric only when n = 2k)."""
    formulation = formulated(drawn("maxcut", 5, np.random.default_rng(4)))
    template = compile_template(shape_of(formulation.ising, 1, "aer"), BACKEND, "test")
    fast = DiagonalEvaluator(template, [BatchProblem("p", formulation, 1)])
    assert fast.simulator.symmetric
    gammas, betas = np.array([0.4]), np.array([0.6])
    psi, _ = numpy_qaoa_state(formulation, gammas, betas, fast.scale[0])
    index = np.arange(32)
    z0, ones = 1 - 2 * (index & 1), np.array([bin(x).count("1") for x in index])
    h = np.array([1.0, 0, 0, 0, 0])
    for count in range(6):
        p = np.abs(psi) ** 2 * (ones == count)
        found = fast.simulator.observe(0, gammas, betas, h, [], np.zeros(0), count)
        assert found == pytest.approx(p @ z0 / p.sum(), abs=1e-12), count


def test_an_estimators_constrained_expectation_comes_from_its_feasible_shots() -> None:
    """On a backend's primitive the feasible part cannot be measured as one observable: the
    shots at the final angles estimate it, with no call of its own."""
    from pipeline.qaoa.sampling import Shots, expectations, feasible_mean

    record = constrained_cases()["rich"]
    formulation = formulated(record)
    problem = BatchProblem("p", formulation, 4096)
    template = compile_template(shape_of(formulation.ising, 1, "aer"), BACKEND, "test")
    estimator = PrimitiveEvaluator(template, [problem], BACKEND, 0)
    gammas, betas = np.array([[0.35]]), np.array([[0.5]])
    energies = estimator.energies(np.array([0]), gammas[:, None], betas[:, None])[:, 0]
    unknown = estimator.expected_objectives(gammas, betas, energies)
    assert np.isnan(unknown).all() and estimator.evaluations[0] == 1  # no call for it
    # Budget 1 of 5: outcomes 1, 2, 4, 8, 16 are feasible; 3 (two assets) is not.
    shots = Shots(np.array([1, 3, 8], dtype=np.int64), np.array([3, 50, 1], dtype=np.int64))
    objective, _ = outcome_table(record)
    assert feasible_mean(formulation, shots) == pytest.approx((3 * objective[1] + objective[8]) / 4)
    assert expectations(unknown, [problem], [shots]) == [feasible_mean(formulation, shots)]
    none = Shots(np.array([3], dtype=np.int64), np.array([9], dtype=np.int64))
    assert expectations(unknown, [problem], [none]) == [None]  # no feasible shot: no value


# -- memory of the fast path (issue 11 item 7) ---------------------------------------------
def traced_peak(action: Callable[[], object]) -> int:
    """Peak bytes that ``action`` allocated through Python and NumPy (tracemalloc)."""
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        action()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def dense_problems(n: int, count: int, linear: bool) -> list[BatchProblem]:
    """Problems of one all-pairs shape with random real weights (no repeated energy levels)."""
    rng = np.random.default_rng(n)
    if linear:
        options = {"weights": "normal", "linear_density": 1.0}
        records = [problem("qubo", n, seed=rng, graph="complete", **options) for _ in range(count)]
    else:
        options = {"weights": "float", "span": (0.5, 2)}
        records = [
            problem("maxcut", n, seed=rng, graph="complete", **options) for _ in range(count)
        ]
    return [BatchProblem(f"p{b}", formulated(r), 16) for b, r in enumerate(records)]


def test_a_diagonal_is_filled_without_a_spins_matrix() -> None:
    from pipeline.qaoa.fast_sim import spin_energies

    n = 18
    rng = np.random.default_rng(0)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.3]
    h, J = rng.normal(size=n), rng.normal(size=len(pairs))
    energies = spin_energies(n, h, pairs, J)
    peak = traced_peak(lambda: spin_energies(n, h, pairs, J))
    assert peak <= 8 * 2**n + 64 * 1024, (
        f"{peak / 2**20:.1f} MiB for an {8 * 2**n >> 20} MiB diagonal"
    )
    x = rng.integers(0, 2**n, 200)
    z = 1.0 - 2.0 * ((x[:, None] >> np.arange(n)) & 1)
    i, j = np.array(pairs).T
    np.testing.assert_allclose(energies[x], z @ h + (z[:, i] * z[:, j]) @ J, atol=1e-10)


@pytest.mark.parametrize("linear", [False, True])
def test_fast_path_allocates_within_its_estimate(linear: bool) -> None:
    """Evaluating a chunk (the grid, Newton steps, the final objectives) stays within
    fast_path_bytes; problems' data are built when first evaluated and released after."""
    from pipeline.qaoa.fast_sim import fast_path_bytes, warm_up

    warm_up()  # as workers do: loading the compiled kernels is not the chunk's memory
    n, count = 16, 4
    problems = dense_problems(n, count, linear)
    shape = shape_of(problems[0].formulation.ising, 1, "aer")
    ansatz = build_ansatz(shape)
    template = CompiledTemplate("test", shape, ansatz, ansatz)
    evaluator = DiagonalEvaluator(template, problems)
    assert evaluator.simulator.symmetric == (not linear)
    assert evaluator.simulator.held_bytes == 0  # nothing is built before it is needed

    def evaluate() -> None:
        rng = np.random.default_rng(1)
        rows = np.arange(count)
        gammas, betas = rng.uniform(-1, 1, (count, 3, 1)), rng.uniform(-1, 1, (count, 3, 1))
        energies = evaluator.energies(rows, gammas, betas)
        evaluator.expected_objectives(gammas[:, 0], betas[:, 0], energies[:, 0])

    peak = traced_peak(evaluate)
    held = evaluator.simulator.held_bytes
    assert 0 < held <= count * 8 * evaluator.simulator.states
    assert peak <= fast_path_bytes(n, count), (peak, fast_path_bytes(n, count))
    assert peak <= fast_path_bytes(n, count, symmetric=not linear)
    evaluator.release()
    assert evaluator.simulator.held_bytes == 0


def test_aer_costs_state_the_fast_path_memory() -> None:
    from pipeline.backends import Workload
    from pipeline.qaoa.fast_sim import fast_path_bytes

    prices = PriceSettings()
    for n, problems in [(10, 1), (21, 8), (24, 3)]:
        work = Workload(problems, n, 100, 10, 1000, 1024, exact=True)
        estimate = BACKEND.costs.estimate(work, prices, 2**40)
        assert estimate.memory_bytes == fast_path_bytes(n, problems)
        assert estimate.memory_bytes >= problems * 8 * 2**n + 16 * 2**n
        tight = BACKEND.costs.estimate(work, prices, estimate.memory_bytes - 1)
        assert tight.reason is not None and "fast" in tight.reason
        estimator = dataclasses.replace(work, exact=False)
        assert BACKEND.costs.estimate(estimator, prices, 2**40).memory_bytes == 16 * 2**n
