"""Reference answers: exact enumeration against independent brute force; known instances."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import truth
from factories import Kind, problem

from batching import plan_claims
from pipeline.backends import get_backend
from pipeline.config import ClassicalSettings, LimitSettings
from pipeline.config_sources import load_settings
from pipeline.formulation import formulate
from pipeline.intake import ClaimedProblem
from pipeline.model import content_hash, spec_from_record
from pipeline.readers import read_path
from pipeline.reference import Reference, exhaustive, judge, known_instance

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("kind", ["maxcut", "qubo", "portfolio"])
def test_exhaustive_reference_is_the_brute_force_optimum(kind: Kind) -> None:
    for i in range(15):  # 2 to 8 variables; a QUBO's sense left out (min), "min" or "max"
        sense = {"sense": ("min", "max")[i % 3 - 1]} if kind == "qubo" and i % 3 else {}
        record = problem(kind, 2 + i % 7, seed=f"{kind}-{i}", span=(-4, 5), **sense)
        reference = exhaustive(formulate(spec_from_record(record)))
        assert reference.proven and reference.solver == "exhaustive"
        assert reference.objective == pytest.approx(truth.brute_force(record))


def test_enumeration_crosses_its_block_boundary() -> None:
    """Past 2**16 assignments the enumeration runs in blocks: the optimum may sit in any."""
    record = problem(
        "qubo", 18, seed=18, graph=(), linear_density=1.0, span=(-9, 9), offset=0, sense="min"
    )
    expected = sum(min(0, c) for _, c in record["linear"])  # each variable on its own
    assert exhaustive(formulate(spec_from_record(record))).objective == expected


def test_a_known_public_instance_is_named_with_its_published_optimum() -> None:
    path = REPO / "data" / "benchmarks" / "biqmac-qubo" / "gka" / "gka1b.sparse"
    [record] = read_path(path, LimitSettings())
    assert record.spec is not None
    note = known_instance(content_hash(record.spec))
    assert note == "known instance biqmac-qubo/gka/gka1b.sparse: published optimum -133.0"
    assert known_instance("0" * 64) is None


def test_judge_picks_exact_then_cpsat_then_says_why_none() -> None:
    """The reference a quantum row is judged by, and its note (the known instance last)."""
    limits = ClassicalSettings(reference_exhaustive_max_variables=4, reference_max_variables=6)
    small, mid, large = (
        formulate(spec_from_record(problem("qubo", n, seed=n, span=(-4, 5)))) for n in (4, 6, 7)
    )
    exact = judge(small, "known instance x: published optimum 1", (99.0, True), limits)
    assert (exact.solver, exact.proven) == ("exhaustive", True)
    assert exact.objective == pytest.approx(exhaustive(small).objective)
    assert exact.note == "known instance x: published optimum 1"
    assert judge(mid, None, (3.5, False), limits) == Reference(3.5, "cpsat", False)
    failed = judge(mid, None, None, limits)
    assert (failed.objective, failed.note) == (None, "no reference: its CP-SAT task failed")
    over = judge(large, "known y", None, limits)
    assert over.note == ("no reference: 7 variables is over reference_max_variables (6); known y")


def test_planning_names_the_known_instance_for_every_later_row() -> None:
    path = REPO / "data" / "benchmarks" / "biqmac-qubo" / "gka" / "gka1b.sparse"
    [record] = read_path(path, LimitSettings())
    assert record.spec is not None
    now = datetime(2026, 1, 1)
    claim = ClaimedProblem(
        "p1", "k1", record.spec.model_dump_json(), content_hash(record.spec), 1, now, now
    )
    settings = load_settings()
    backend = get_backend("aer", settings.quantum.max_qubits)
    [[planned_problem]] = [b.problems for b in plan_claims([claim], backend, settings)[1]]
    assert planned_problem.known_instance == known_instance(content_hash(record.spec))
    assert planned_problem.known_instance is not None
