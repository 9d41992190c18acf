"""Batch planning invariants, by example and by hypothesis."""

from __future__ import annotations

import pytest
from factories import planned, problem
from hypothesis import given, settings
from hypothesis import strategies as st

from batching.batch_sizes import BatchSizes
from batching.batches import PlannedProblem
from batching.estimate import estimate_run
from batching.planner import plan_batches
from flows.progress import Eta
from pipeline.backends import get_backend
from pipeline.config_sources import load_settings
from pipeline.durations import duration
from pipeline.model import MaxCutSpec
from pipeline.qaoa.evaluators import uses_fast_path
from pipeline.qaoa.shapes import shape_of


def structure(problem: PlannedProblem) -> tuple[int, tuple[tuple[int, int], ...], int]:
    """A MaxCut problem's circuit structure straight from its spec, sharing no pipeline code."""
    spec = problem.spec
    assert isinstance(spec, MaxCutSpec)
    pairs = sorted({(min(int(e[0]), int(e[1])), max(int(e[0]), int(e[1]))) for e in spec.edges})
    return spec.n, tuple(pairs), problem.reps


def path(
    index: int, n: int, weight: float, chord: bool = False, route: str = "auto", reps: int = 1
) -> PlannedProblem:
    """Problem ``index``: the ``n``-path, every edge ``weight``; ``chord``: and edge (0, n - 1)."""
    graph = [(i, i + 1) for i in range(n - 1)] + ([(0, n - 1)] if chord else [])
    return planned(index, problem("maxcut", n, graph=graph, weights=weight, route=route), reps=reps)


def test_same_structure_different_weights_share_a_shape() -> None:
    a, b = path(0, 5, 1.0), path(1, 5, 3.5)
    assert shape_of(a.formulation.ising, 1, "aer") == shape_of(b.formulation.ising, 1, "aer")
    assert shape_of(a.formulation.ising, 1, "aer") != shape_of(a.formulation.ising, 2, "aer")
    assert shape_of(a.formulation.ising, 1, "aer") != shape_of(a.formulation.ising, 1, "aer-noisy")
    c = path(2, 5, 1.0, chord=True)
    assert shape_of(c.formulation.ising, 1, "aer") != shape_of(a.formulation.ising, 1, "aer")


problem_lists = st.lists(
    st.tuples(
        st.integers(2, 7),  # nodes
        st.booleans(),  # extra chord
        st.sampled_from(["auto", "quantum", "classical"]),
        st.integers(1, 2),  # reps
        st.floats(0.5, 5.0),  # weight
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(items=problem_lists, max_qubits=st.integers(2, 8), max_batch=st.integers(1, 9))
def test_every_problem_lands_in_exactly_one_valid_batch(
    items, max_qubits: int, max_batch: int
) -> None:
    problems = []
    for index, (n, chord, route, reps, weight) in enumerate(items):
        problems.append(path(index, n, weight, chord and n > 2, route=route, reps=reps))
    batches = plan_batches(
        problems, "aer", lambda n: "too large" if n > max_qubits else None, max_batch
    )
    placed = [p.problem_id for b in batches for p in b.problems]
    assert sorted(placed) == sorted(p.problem_id for p in problems)
    for batch in batches:
        assert 1 <= batch.size <= max_batch
        if batch.shape is not None:  # quantum is open to its problems: routing decides
            # the shape, recomputed from the raw edges: qubits, interaction pairs, depth
            assert {structure(p) for p in batch.problems} == {
                (batch.shape.n_qubits, batch.shape.pairs, batch.shape.reps)
            }
            assert batch.shape.linear == () and batch.shape.target == "aer"
            assert all(
                p.spec.route != "classical" and p.formulation.ising.n <= max_qubits
                for p in batch.problems
            )
        else:
            assert all(
                p.spec.route == "classical" or p.formulation.ising.n > max_qubits
                for p in batch.problems
            )
            for p in batch.problems:
                assert (p.problem_id in batch.fallbacks) == (p.spec.route == "quantum")
    assert len({b.batch_id for b in batches}) == len(batches)


# --- the run's estimate, said before it computes ------------------------------------------
def test_the_estimate_names_what_dominates_and_scales_to_the_backlog() -> None:
    settings = load_settings(overrides={"classical.time_limit_s": 10})
    backend = get_backend("aer", settings.quantum.max_qubits)
    small = [path(i, 6, 1) for i in range(8)]
    large = [
        planned(
            100 + i,
            problem(
                "maxcut", 150, seed=i, density=0.1, nonempty=True, weights=1, route="classical"
            ),
        )
        for i in range(3)
    ]
    batches = plan_batches([*small, *large], "aer", backend.target.why_not, 4)
    estimate = estimate_run(batches, backend, settings)
    assert (estimate.quantum_problems, estimate.classical_problems) == (8, 3)
    assert estimate.at_time_limit == 3 and estimate.classical_s == 30
    assert estimate.wall_seconds(workers=2, backlog=11) == pytest.approx(estimate.core_seconds / 2)
    assert estimate.wall_seconds(workers=2, backlog=22) == pytest.approx(estimate.core_seconds)
    said = estimate.describe(workers=2, backlog=22)
    assert "3 classical problems × 10 s limit (classical.time_limit_s)" in said
    assert "from the first 11 of 22" in said
    quantum_only = estimate_run(
        plan_batches(small, "aer", backend.target.why_not, 4), backend, settings
    )
    assert "quantum batches of up to 6 qubits" in quantum_only.dominant()


def test_the_eta_starts_from_the_estimate_and_moves_to_the_observed_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("flows.progress.time.monotonic", lambda: now[0])
    eta = Eta(total=100, estimate_s=50.0)
    assert eta.remaining(0) == 50.0
    now[0] += 10  # 10 s in, nothing done: the estimate less what has passed
    assert eta.remaining(0) == 40.0
    assert eta.remaining(50) == pytest.approx(0.5 * 10 + 0.5 * 40)  # half done: half each
    assert eta.remaining(100) == 0.0
    assert Eta(total=10, estimate_s=None).text(0) == "ETA unknown"
    assert duration(3725) == "1 h 02 min" and duration(200) == "3 min 20 s"


def sized(problems: list[PlannedProblem], **overrides: float) -> list[int]:
    """Batch sizes the run would plan ``problems`` into under ``overrides``."""
    settings = load_settings(overrides=overrides)
    backend = get_backend("aer", settings.quantum.max_qubits)
    batches = plan_batches(
        problems,
        "aer",
        backend.target.why_not,
        BatchSizes(backend, settings),
        pooled=lambda n: uses_fast_path(backend, n),
    )
    assert sorted(p.problem_id for b in batches for p in b.problems) == sorted(
        p.problem_id for p in problems
    )
    return sorted(len(b.problems) for b in batches)


def test_batches_hold_their_expected_compute_not_a_fixed_count() -> None:
    small = [path(i, 6, 1.0 + i % 3) for i in range(2500)]
    # Milliseconds each on the fast path: the cap decides, far above the old fixed 64.
    assert sized(small) == [833, 833, 834]
    assert max(sized(small, **{"quantum.max_batch_size": 100})) == 100
    # Below the cap a batch holds batch_seconds of compute: half the seconds, twice the batches.
    few = len(sized(small, **{"quantum.batch_seconds": 0.2}))
    assert few >= 4 and len(sized(small, **{"quantum.batch_seconds": 0.1})) in (
        2 * few - 1,
        2 * few,
        2 * few + 1,
    )
    # CP-SAT at its 10 s limit on each large problem: a batch each; tiny ones share one.
    large = [
        planned(
            9000 + i,
            problem(
                "maxcut", 150, seed=i, density=0.1, nonempty=True, weights=1, route="classical"
            ),
        )
        for i in range(3)
    ]
    tiny = [path(5000 + i, 4, 1.0, route="classical") for i in range(300)]
    assert sized([*tiny[:150], *large, *tiny[150:]]) == [1, 1, 1, 300]
