"""Pooling by class: on a backend simulated exactly, problems of one size share a batch
whatever their graphs, and every answer still comes from its own problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import truth
from factories import Seed, planned, problem, rng_of

from batching.batches import PlannedProblem
from batching.planner import plan_batches
from flows.deps import open_deps
from flows.replay import replay_batch
from flows.run import run_once
from pipeline.backends import get_backend
from pipeline.config_sources import load_settings
from pipeline.formulation import Formulation, formulate
from pipeline.model import ProblemSpec, spec_from_record
from pipeline.qaoa.angle_store import plan_for
from pipeline.qaoa.evaluators import (
    BatchProblem,
    DiagonalEvaluator,
    PrimitiveEvaluator,
    normalised_weights,
)
from pipeline.qaoa.shapes import is_pool_label, pool_of, shape_of
from pipeline.qaoa.templates import compile_template
from pipeline.results import query
from pipeline.submit import submit_files

BACKEND = get_backend("aer", 16)


def maxcut(n: int, seed: Seed) -> ProblemSpec:
    """A MaxCut spec on a G(n, 1/2) graph with at least one edge, weights 1 to 9."""
    return spec_from_record(problem("maxcut", n, seed=seed, nonempty=True))


def three_regular(n: int, seed: Seed) -> ProblemSpec:
    """A MaxCut spec on a random 3-regular graph, every weight 1."""
    return spec_from_record(problem("maxcut", n, seed=seed, graph="regular", weights=1))


def claimed(index: int, spec: ProblemSpec, reps: int = 1) -> PlannedProblem:
    return planned(index, spec, reps=reps, shots=64)


def plan(problems: list[PlannedProblem], pooled: bool, size: int = 64) -> list:
    return plan_batches(problems, "aer", lambda n: None, size, pooled=lambda n: pooled)


def test_distinct_graphs_of_one_size_share_a_pool_only_where_simulated_exactly() -> None:
    rng = rng_of(1)
    problems = [claimed(i, maxcut(5 + i % 2, rng)) for i in range(12)]
    exact = plan(problems, pooled=False)
    assert len(exact) == len({shape_of(p.formulation.ising, 1, "aer") for p in problems}) > 2
    pooled = plan(problems, pooled=True)
    assert sorted(b.size for b in pooled) == [6, 6]
    for batch in pooled:
        assert batch.shape.pooled and is_pool_label(batch.shape.label)
        assert {p.formulation.ising.n for p in batch.problems} == {batch.shape.n_qubits}
        # every graph of the pool is a special case of its complete graph
        assert all(set(p.formulation.ising.pairs) <= set(batch.shape.pairs) for p in batch.problems)
    assert not any(is_pool_label(b.shape.label) for b in exact)


def test_a_pool_is_cut_evenly_keeps_kinds_apart_and_leaves_problems_without_terms_exact() -> None:
    rng = rng_of(2)
    problems = [claimed(i, maxcut(6, rng)) for i in range(10)]
    qubo = spec_from_record(
        {"kind": "qubo", "n": 6, "linear": [], "quadratic": [[0, 1, 2.0], [2, 5, -1.0]]}
    )
    problems += [
        claimed(10, qubo),
        claimed(11, spec_from_record({"kind": "maxcut", "n": 6, "edges": []})),
    ]
    batches = plan(problems, pooled=True, size=4)
    maxcut_pool = [b for b in batches if b.shape.pooled and b.problems[0].spec.kind == "maxcut"]
    assert sorted(b.size for b in maxcut_pool) == [3, 3, 4]  # 10 in three, not 4 + 4 + 2
    assert [b.problems[0].problem_id for b in batches if b.problems[0].spec.kind == "qubo"] == [
        "p10"
    ]
    [edgeless] = [b for b in batches if b.problems[0].problem_id == "p11"]
    assert not edgeless.shape.pooled and edgeless.shape.pairs == ()


def test_a_problem_with_a_deadline_never_shares_a_pooled_batch_with_one_without() -> None:
    rng = rng_of(10)
    late = spec_from_record(
        problem("maxcut", 6, seed=rng, nonempty=True, deadline="2026-01-01T00:00Z")
    )
    problems = [claimed(i, maxcut(6, rng)) for i in range(3)]
    batches = plan([*problems, claimed(3, late)], pooled=True)
    assert sorted(b.size for b in batches) == [1, 3]
    [urgent] = [b for b in batches if b.size == 1]
    assert urgent.shape.pooled and urgent.problems[0].spec.deadline is not None


def test_a_pool_of_one_degree_sequence_keeps_its_class_and_a_mixed_pool_is_its_own() -> None:
    rng = rng_of(3)
    regular = [claimed(i, three_regular(8, rng), reps=2) for i in range(4)]
    [uniform] = plan(regular, pooled=True)
    assert uniform.shape.pooled and not uniform.angle_shape.pooled
    assert plan_for(None, "maxcut", uniform.angle_shape).source == "fixed"  # 3-regular angles
    mixed = [*regular, claimed(9, maxcut(8, rng), reps=2)]
    [batch] = plan(mixed, pooled=True)
    assert batch.angle_shape is batch.shape
    assert plan_for(None, "maxcut", batch.angle_shape).class_key == "maxcut/q8/dany/p2/noh"


def test_problems_of_one_class_are_kept_together_within_a_pool() -> None:
    rng = rng_of(4)
    regular = [three_regular(8, rng) for _ in range(4)]
    other = [maxcut(8, rng) for _ in range(4)]
    interleaved = [s for pair in zip(other, regular, strict=True) for s in pair]
    batches = plan([claimed(i, s) for i, s in enumerate(interleaved)], pooled=True, size=4)
    uniform = [b for b in batches if not b.angle_shape.pooled]
    assert len(uniform) == 1
    assert {p.problem_id for p in uniform[0].problems} == {"p1", "p3", "p5", "p7"}


def own_expectation(formulation: Formulation, gammas: np.ndarray, betas: np.ndarray) -> float:
    """<objective> of one problem's QAOA state, by a plain statevector over its own graph.

    The engine's convention: the cost layer is exp(-i gamma (E - constant) / rms) with E
    the Ising energy and rms the root mean square of its nonzero weights; the mixer is
    RX(2 beta) on every qubit.
    """
    ising = formulation.ising
    n = ising.n
    bits = (np.arange(1 << n)[:, None] >> np.arange(n)) & 1
    z = 1 - 2 * bits
    energy = z @ ising.h + sum(
        w * z[:, i] * z[:, j] for (i, j), w in zip(ising.pairs, ising.J, strict=True)
    )
    weights = np.concatenate([ising.h[ising.h != 0], ising.J])
    energy = energy / np.sqrt(np.mean(weights**2))
    state = np.full(1 << n, (1 / np.sqrt(2)) ** n, dtype=complex)
    for gamma, beta in zip(gammas, betas, strict=True):
        state = state * np.exp(-1j * gamma * energy)
        for q in range(n):
            flipped = state[np.arange(1 << n) ^ (1 << q)]
            state = np.cos(beta) * state - 1j * np.sin(beta) * flipped
    objectives = formulation.objective(bits.astype(np.int8))
    return float(np.abs(state) ** 2 @ objectives)


def pool_problems(count: int, n: int, seed: int) -> list[BatchProblem]:
    rng = rng_of(seed)
    return [BatchProblem(f"p{i}", formulate(maxcut(n, rng)), 64) for i in range(count)]


@pytest.mark.parametrize("evaluator", ["fast", "estimator"])
def test_each_pooled_problem_is_evaluated_on_its_own_graph(evaluator: str) -> None:
    """Expectations on the pool's template, problem by problem, against a statevector of that
    problem alone: a problem given another's graph (or weights) would differ."""
    problems = pool_problems(4, 5, seed=5)
    template = compile_template(pool_of(problems[0].formulation.ising, 2, "aer"), BACKEND, "t")
    engine = (
        DiagonalEvaluator(template, problems)
        if evaluator == "fast"
        else PrimitiveEvaluator(template, problems, BACKEND, seed=7)
    )
    rng = np.random.default_rng(6)
    gammas, betas = rng.uniform(0.1, 1.0, (4, 2)), rng.uniform(-0.8, 0.8, (4, 2))
    energies = engine.energies(np.arange(4), gammas[:, None, :], betas[:, None, :])[:, 0]
    got = engine.expected_objectives(gammas, betas, energies)
    want = [
        own_expectation(p.formulation, g, b)
        for p, g, b in zip(problems, gammas, betas, strict=True)
    ]
    assert np.allclose(got, want, atol=1e-8), (got, want)
    assert len({round(v, 6) for v in want}) == 4  # the graphs really differ


def test_a_problem_that_does_not_fit_a_template_is_refused() -> None:
    [a, b] = [
        BatchProblem(graph, formulate(spec_from_record(problem("maxcut", 5, graph=graph))), 64)
        for graph in ("path", "ring")
    ]
    template = compile_template(shape_of(a.formulation.ising, 1, "aer"), BACKEND, "t")
    assert not set(b.formulation.ising.pairs) <= set(a.formulation.ising.pairs)  # (4, 0)
    with pytest.raises(ValueError, match="does not fit"):
        normalised_weights(template, [a, b])


def test_a_run_pools_distinct_graphs_and_answers_each_from_its_own(tmp_path: Path) -> None:
    """24 MaxCut problems on distinct graphs of 5 and 6 nodes: fewer batches than problems,
    and each row's solution, objective and expectation are its own graph's."""
    rng = rng_of(9)
    records = []
    for i in range(24):
        n = 5 + i % 2
        records.append(problem("maxcut", n, seed=rng, nonempty=True, key=f"g{i}"))
    source = tmp_path / "p.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    settings = load_settings(tmp_path / "home", overrides={"dask.inline_below_s": 1e9})
    submit_files(settings, [source])
    with open_deps(settings) as deps:
        summary = run_once(deps)
    assert summary.completed == 24 and summary.quantum_batches == 2
    assert summary.templates_compiled == 2 and summary.problems_per_batch == 12.0
    rows = query(settings.results_location, "SELECT * FROM problems").to_pylist()
    assert {r["route"] for r in rows} == {"quantum"}
    by_key = {r["key"]: r for r in records}
    for row in rows:
        record = by_key[row["key"]]
        cut = truth.objective(record, row["solution"])
        assert row["objective"] == cut and row["reference_objective"] == truth.brute_force(record)
        assert cut <= row["reference_objective"]
        reps = row["reps"]
        angles = np.asarray(row["angles"])
        own = own_expectation(formulate(spec_from_record(record)), angles[:reps], angles[reps:])
        assert row["expected_objective"] == pytest.approx(own, abs=1e-8)
        assert is_pool_label(row["shape_key"])
    runs = query(settings.results_location, "SELECT problems_per_batch FROM runs").to_pylist()
    assert runs == [{"problems_per_batch": 12.0}]
    [batch_id, *_] = sorted({r["batch_id"] for r in rows})
    replayed = replay_batch(settings, batch_id, None)
    assert len(replayed) == 12 and all(r.reproduced for r in replayed)
