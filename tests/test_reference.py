"""Reference answers: exact enumeration against independent brute force; known instances."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import truth

from pipeline.config import LimitSettings
from pipeline.formulation import formulate
from pipeline.model import content_hash, spec_from_record
from pipeline.readers import read_path
from pipeline.reference import exhaustive, known_instance

REPO = Path(__file__).resolve().parent.parent


def random_record(kind: str, rng: random.Random) -> dict[str, Any]:
    n = rng.randint(2, 9)
    if kind == "maxcut":
        edges = [
            [i, j, rng.randint(-3, 5)]
            for i in range(n)
            for j in range(i + 1, n)
            if rng.random() < 0.5
        ]
        return {"kind": "maxcut", "n": n, "edges": edges}
    if kind == "qubo":
        record: dict[str, Any] = {
            "kind": "qubo",
            "n": n,
            "linear": [[i, rng.randint(-5, 5)] for i in range(n) if rng.random() < 0.7],
            "quadratic": [
                [i, j, rng.randint(-4, 4)]
                for i in range(n)
                for j in range(i + 1, n)
                if rng.random() < 0.4
            ],
            "offset": rng.randint(-3, 3),
        }
        if rng.random() < 0.5:
            record["sense"] = rng.choice(["min", "max"])
        return record
    sigma = [[0.0] * n for _ in range(n)]
    for i in range(n):
        sigma[i][i] = round(rng.uniform(0.1, 1), 3)
        for j in range(i + 1, n):
            sigma[i][j] = sigma[j][i] = round(rng.uniform(-0.2, 0.2), 3)
    mu = [round(rng.uniform(-0.5, 1), 3) for _ in range(n)]
    return {"kind": "portfolio", "mu": mu, "sigma": sigma, "budget": rng.randint(0, n), "risk": 0.7}


@pytest.mark.parametrize("kind", ["maxcut", "qubo", "portfolio"])
def test_exhaustive_reference_is_the_brute_force_optimum(kind: str) -> None:
    rng = random.Random(kind)
    for _ in range(15):
        record = random_record(kind, rng)
        reference = exhaustive(formulate(spec_from_record(record)))
        assert reference.proven and reference.solver == "exhaustive"
        assert reference.objective == pytest.approx(truth.brute_force(record))


def test_enumeration_crosses_its_block_boundary() -> None:
    """Past 2**16 assignments the enumeration runs in blocks: the optimum may sit in any."""
    n = 18
    rng = random.Random(18)
    record = {
        "kind": "qubo",
        "n": n,
        "linear": [[i, rng.randint(-9, 9)] for i in range(n)],
        "sense": "min",
    }
    expected = sum(min(0, c) for _, c in record["linear"])  # each variable on its own
    assert exhaustive(formulate(spec_from_record(record))).objective == expected


def test_a_known_public_instance_is_named_with_its_published_optimum() -> None:
    path = REPO / "data" / "benchmarks" / "biqmac-qubo" / "gka" / "gka1b.sparse"
    [record] = read_path(path, LimitSettings())
    assert record.spec is not None
    note = known_instance(content_hash(record.spec))
    assert note == "known instance biqmac-qubo/gka/gka1b.sparse: published optimum -133.0"
    assert known_instance("0" * 64) is None
