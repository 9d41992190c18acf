"""The kind registry: exactly the known kinds, exhaustive dispatch, and each kind's
formulation against tests/truth.py, which shares no code with pipeline/ (its classical
answer, as a worker computes it: test_workers.py).
"""

from __future__ import annotations

import importlib
import itertools
import pkgutil
import typing
from typing import Any

import numpy as np
import pytest
from truth import feasible
from truth import objective as true_objective

import pipeline.kinds
from pipeline.formulation import formulate
from pipeline.kinds import KINDS, ProblemSpec, UnknownKindError, get, kind_of
from pipeline.model import spec_from_record

KNOWN = {"maxcut", "qubo", "portfolio"}


# --- random records, straight from the contract's fields ------------------------------------


def _coefficient(rng: np.random.Generator) -> int | float:
    return int(rng.integers(-9, 10)) if rng.random() < 0.5 else round(float(rng.uniform(-9, 9)), 3)


def random_maxcut(rng: np.random.Generator, n: int) -> dict[str, Any]:
    edges: list[list[int | float]] = []
    for u, v in itertools.combinations(range(n), 2):
        if rng.random() < 0.6:
            pair = [u, v] if rng.random() < 0.5 else [v, u]
            edges.append(pair if rng.random() < 0.3 else [*pair, _coefficient(rng)])
    return {"kind": "maxcut", "n": n, "edges": edges}


def random_qubo(rng: np.random.Generator, n: int) -> dict[str, Any]:
    linear = [[i, _coefficient(rng)] for i in range(n) if rng.random() < 0.7]
    quadratic = [
        [i, j, _coefficient(rng)] if rng.random() < 0.5 else [j, i, _coefficient(rng)]
        for i, j in itertools.combinations_with_replacement(range(n), 2)
        if rng.random() < 0.5
    ]
    sense = "min" if rng.random() < 0.5 else "max"
    return {
        "kind": "qubo",
        "n": n,
        "linear": linear,
        "quadratic": quadratic,
        "offset": _coefficient(rng),
        "sense": sense,
    }


def random_portfolio(rng: np.random.Generator, n: int) -> dict[str, Any]:
    a = rng.normal(size=(n, n))
    sigma = (a @ a.T / n).round(3)
    return {
        "kind": "portfolio",
        "mu": [float(m) for m in rng.uniform(-0.2, 1.0, n).round(3)],
        "sigma": [[float(s) for s in row] for row in sigma],
        "budget": int(rng.integers(0, n + 1)),
        "risk": float(rng.choice([0.0, 0.5, 1.25])),
    }


RANDOM = {"maxcut": random_maxcut, "qubo": random_qubo, "portfolio": random_portfolio}


def all_solutions(n: int) -> list[str]:
    return ["".join(map(str, bits)) for bits in itertools.product((0, 1), repeat=n)]


# --- the registry -----------------------------------------------------------------------------


def test_registry_lists_exactly_the_known_kinds() -> None:
    assert set(KINDS) == KNOWN
    for name, kind in KINDS.items():
        assert kind.name == name
        assert get(name) is kind
        assert kind.spec_type.model_fields["kind"].annotation == typing.Literal[name]


def test_every_kind_module_is_registered_and_in_the_spec_union() -> None:
    """A new kind module that is not listed in the registry fails here, not in production."""
    defined = {}
    for module in pkgutil.iter_modules(pipeline.kinds.__path__):
        kind = getattr(importlib.import_module(f"pipeline.kinds.{module.name}"), "KIND", None)
        if kind is not None:
            defined[kind.name] = kind
    assert defined == dict(KINDS)
    assert set(typing.get_args(ProblemSpec)) == {kind.spec_type for kind in KINDS.values()}


@pytest.mark.parametrize("name", ["knapsack", "MaxCut", "", None, ["maxcut"]])
def test_an_unknown_kind_raises_and_names_the_known_ones(name: Any) -> None:
    with pytest.raises(UnknownKindError, match="unknown problem kind") as raised:
        get(name)
    for known in KNOWN:
        assert known in str(raised.value)
    with pytest.raises(UnknownKindError):
        spec_from_record({"kind": name, "n": 2, "edges": []})


def test_dispatch_follows_the_spec_not_a_default() -> None:
    rng = np.random.default_rng(0)
    for name, make in RANDOM.items():
        assert kind_of(spec_from_record(make(rng, 3))) is KINDS[name]


# --- formulations against independent truth -------------------------------------------------


@pytest.mark.parametrize("name", sorted(KNOWN))
@pytest.mark.parametrize("seed", range(8))
def test_formulation_objective_matches_independent_truth(name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    record = RANDOM[name](rng, int(rng.integers(1, 8)))
    formulation = formulate(spec_from_record(record))
    solutions = all_solutions(formulation.n)
    bits = np.array([[int(c) for c in s] for s in solutions], dtype=np.int8)
    expected = np.array([true_objective(record, s) for s in solutions])
    np.testing.assert_allclose(formulation.objective(bits), expected, rtol=1e-12, atol=1e-9)
    allowed = np.array([feasible(record, s) for s in solutions])
    np.testing.assert_array_equal(formulation.feasible(bits), allowed)
    assert formulation.sense == record.get("sense", "max")
    # The quantum path's QUBO agrees on feasible answers and ranks infeasible ones below.
    penalised = formulation.qubo.evaluate(bits)
    np.testing.assert_allclose(penalised[allowed], expected[allowed], rtol=1e-9, atol=1e-9)
    if not allowed.all():
        best = expected[allowed].min() if formulation.sense == "min" else expected[allowed].max()
        worse = (
            penalised[~allowed] > best if formulation.sense == "min" else penalised[~allowed] < best
        )
        assert worse.all()
