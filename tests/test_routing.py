"""Routing: the per-problem rule (batching/rules.py), the per-batch economics
(batching/economics.py: cost, latency, deadlines, budgets, memory) and sizing
(batching/sizing.py: chunks, CP-SAT's expected time)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from factories import planned, problem

from batching.batches import PlannedProblem
from batching.economics import route_batches
from batching.planner import plan_batches
from batching.rules import ProblemFacts, problem_refusal
from batching.sizing import classical_seconds
from pipeline.backends import get_backend
from pipeline.config_sources import load_settings


# --- the per-problem rule --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("requested", "n", "route", "fallback"),
    [
        ("auto", 8, "quantum", False),
        ("auto", 20, "classical", False),
        ("classical", 4, "classical", False),
        ("quantum", 20, "classical", True),
        ("quantum", 16, "quantum", False),
    ],
)
def test_routing_rule(requested: str, n: int, route: str, fallback: bool) -> None:
    why_not = f"needs {n} qubits; at most 16" if n > 16 else None
    refusal = problem_refusal(ProblemFacts(requested, why_not))
    assert (refusal is None) == (route == "quantum")
    assert (refusal is not None and refusal.fallback() is not None) == fallback
    assert refusal is None or refusal.message


# --- per-batch economics -------------------------------------------------------------------
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def ring(index: int, n: int = 5, **fields: object) -> PlannedProblem:
    """Problem ``index``: an ``n``-ring weighted 1 to 3, claimed at NOW."""
    record = problem("maxcut", n, graph="ring", seed=index, span=(1, 3), **fields)
    return planned(index, record, at=NOW.replace(tzinfo=None))


def route(problems: list[PlannedProblem], backend: str = "aer", **overrides: object) -> list:
    settings = load_settings(overrides=dict(overrides))
    quantum = get_backend(backend, settings.quantum.max_qubits)
    batches = plan_batches(problems, backend, quantum.target.why_not, 4)
    return route_batches(batches, quantum, settings, NOW, compiled=lambda _: True, workers=2)


def test_affordable_and_on_time_goes_quantum_with_its_numbers() -> None:
    (batch,) = route([ring(i) for i in range(4)])
    numbers = batch.routing
    assert batch.route == "quantum" and numbers.decision == "quantum"
    assert numbers.est_quantum_cost_usd > 0 and numbers.est_quantum_compile_s == 0.0
    assert numbers.budget_allotted_usd >= numbers.est_quantum_cost_usd
    assert numbers.est_quantum_latency_s == pytest.approx(numbers.est_quantum_execute_s)


@pytest.mark.parametrize(
    ("overrides", "extra", "word"),
    [
        ({"budget.per_problem_usd": 1e-12}, {}, "per-problem budget"),
        ({"budget.per_run_usd": 1e-12}, {}, "run budget"),
        ({"budget.tenant_quota_usd": {"lab": 1e-12}}, {"tenant": "lab"}, "tenant 'lab'"),
        ({}, {"deadline": (NOW + timedelta(milliseconds=1)).isoformat()}, "deadline"),
    ],
)
def test_unaffordable_or_late_goes_classical_with_the_reason(
    overrides: dict, extra: dict, word: str
) -> None:
    problems = [ring(i, **extra) for i in range(3)] + [ring(9, route="quantum", **extra)]
    (batch,) = route(problems, **overrides)
    assert batch.route == "classical" and batch.shape is None and word in batch.route_reason
    # only the one that asked for quantum is degraded, with the route's reason
    assert {pid: f.message for pid, f in batch.fallbacks.items()} == {"p9": batch.route_reason}


def test_the_run_budget_goes_to_the_earliest_deadline_first() -> None:
    later = [ring(i, n=5, deadline=(NOW + timedelta(hours=2)).isoformat()) for i in range(4)]
    sooner = [ring(10 + i, n=6, deadline=(NOW + timedelta(hours=1)).isoformat()) for i in range(4)]
    probe = route(later + sooner)
    cost = {b.shape.n_qubits: b.routing.est_quantum_cost_usd for b in probe}
    budget = cost[6] * 3 + cost[5] * 0.5  # room for one batch's reservation, not both
    routed = {
        b.problems[0].formulation.ising.n: b
        for b in route(later + sooner, **{"budget.per_run_usd": budget})
    }
    assert routed[6].route == "quantum" and routed[5].route == "classical"
    assert "run budget" in routed[5].route_reason


def test_too_big_for_the_simulator_memory_is_infeasible() -> None:
    (batch,) = route([ring(i, n=12) for i in range(2)], **{"routing.simulator_memory_bytes": 1024})
    assert batch.route == "classical" and not batch.routing.est_quantum_feasible
    assert "statevector of 12 qubits" in batch.route_reason
    assert math.isfinite(batch.routing.est_classical_latency_s)
    assert np.isclose(batch.routing.budget_allotted_usd, 0.0)


def test_waves_of_one_run_share_its_budget() -> None:
    """A run routes each wave of claims separately: the run budget carries across them."""
    from batching.economics import Budgets

    settings = load_settings()
    quantum = get_backend("aer", settings.quantum.max_qubits)
    budgets = Budgets.for_run(settings)

    def wave(first: int) -> list:
        problems = [ring(i) for i in range(first, first + 4)]
        batches = plan_batches(problems, "aer", quantum.target.why_not, 4)
        return route_batches(
            batches, quantum, settings, NOW, compiled=lambda _: True, workers=2, budgets=budgets
        )

    (one,) = wave(0)
    left = budgets.run_left
    assert one.route == "quantum" and left < settings.budget.per_run_usd
    (two,) = wave(10)
    assert two.routing.budget_run_left_usd == pytest.approx(left)  # not a fresh budget
    assert budgets.run_left < left


@pytest.mark.parametrize("n", [12, 18, 20, 22])
@pytest.mark.parametrize("size", [1, 5, 64])
def test_fast_path_chunks_fit_a_workers_memory(n: int, size: int) -> None:
    import math

    from batching.sizing import chunk_count
    from pipeline.memory import fast_path_bytes

    memory = 64 * 2**20
    count = chunk_count(size, n, workers=2, exact=True, memory_bytes=memory)
    per_chunk = math.ceil(size / count)
    assert 1 <= count <= size
    assert per_chunk == 1 or fast_path_bytes(n, per_chunk) <= memory
    assert count >= min(2, size // 4)  # still one chunk per worker where there is work for it
    if count > max(1, min(2, size // 4)):  # cut further for memory: twice as big would not fit
        assert fast_path_bytes(n, 2 * per_chunk) > memory


def test_cpsat_estimate_follows_the_measured_growth_and_stops_at_the_limit() -> None:
    """Measured here (bench_estimate, MEASUREMENTS.md): MaxCut 0.02 s at 50 edges, 0.4 s at
    80, 2-5 s at 100, unproved in 10 s past ~110; a dense 20-variable QUBO ~1 s, unproved at
    40. Past what it can prove, CP-SAT uses its whole limit."""
    limit = 10.0

    def maxcut(edges: int) -> float:
        n = 60
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)][:edges]
        return classical_seconds(planned(0, problem("maxcut", n, graph=pairs, weights=1)), limit)

    def dense_qubo(n: int) -> float:
        record = problem("qubo", n, graph="complete", weights=1, linear_density=0, offset=0)
        return classical_seconds(planned("q", record), limit)

    assert maxcut(30) < maxcut(50) < 0.1
    assert 0.1 < maxcut(80) < 1
    assert 1 < maxcut(100) < limit
    assert maxcut(150) == limit
    assert 0.3 < dense_qubo(20) < 5
    assert dense_qubo(40) == limit
