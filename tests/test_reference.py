"""Reference answers: exact enumeration against independent brute force; known instances."""

from __future__ import annotations

from pathlib import Path

import pytest
import truth
from factories import Kind, problem

from pipeline.config import LimitSettings
from pipeline.formulation import formulate
from pipeline.model import content_hash, spec_from_record
from pipeline.readers import read_path
from pipeline.reference import exhaustive, known_instance

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
