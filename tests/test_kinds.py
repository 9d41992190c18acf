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
from factories import Kind, problem
from truth import feasible
from truth import objective as true_objective

import pipeline.kinds
from pipeline.formulation import formulate
from pipeline.kinds import KINDS, ProblemSpec, UnknownKindError, get, kind_of
from pipeline.model import spec_from_record

KNOWN = {"maxcut", "qubo", "portfolio"}


# --- random records, straight from the contract's fields ------------------------------------


def contract_record(kind: Kind, n: int, seed: int) -> dict[str, Any]:
    """A random record as users may write one (tests/factories.py): pairs either way round,
    coefficients integer or 3-decimal in [-9, 9] (30 % of MaxCut's edges none), QUBO
    diagonal terms, either QUBO sense written out."""
    sense = {"sense": ("min", "max")[seed % 2]} if kind == "qubo" else {}
    return problem(
        kind,
        n,
        seed=seed,
        density=0.6 if kind == "maxcut" else 0.5,
        weights="mixed",
        span=(-9, 9),
        orient=True,
        diagonal=True,
        **sense,
    )


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
    for name in sorted(KNOWN):
        assert kind_of(spec_from_record(contract_record(name, 3, seed=0))) is KINDS[name]


# --- formulations against independent truth -------------------------------------------------


@pytest.mark.parametrize("name", sorted(KNOWN))
@pytest.mark.parametrize("seed", range(8))
def test_formulation_objective_matches_independent_truth(name: str, seed: int) -> None:
    record = contract_record(name, 1 + seed % 7, seed)  # 1 to 7 variables
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


@pytest.mark.parametrize("name", ["maxcut", "qubo", "portfolio"])
def test_a_formulation_travels_whole_in_one_pickle_frame(name: str) -> None:
    """Dask pickles task payloads with out-of-band buffers: a problem's arrays go inside the
    pickle, not as frames of their own, and come back equal (and writable)."""
    import pickle

    formulation = formulate(spec_from_record(problem(name, 6, seed=3)))
    formulation.qubo.evaluate(np.zeros((1, 6)))  # caches the pair index: not sent either
    frames: list[pickle.PickleBuffer] = []
    back = pickle.loads(pickle.dumps(formulation, protocol=5, buffer_callback=frames.append))
    assert frames == []
    for before, after in [
        (formulation.qubo, back.qubo),
        (formulation.objective_qubo, back.objective_qubo),
    ]:
        assert (after.n, after.pairs, after.offset, after.sense) == (
            before.n,
            before.pairs,
            before.offset,
            before.sense,
        )
        assert np.array_equal(after.linear, before.linear) and after.linear.flags.writeable
        assert np.array_equal(after.quad, before.quad)
    ising, again = formulation.ising, back.ising
    assert (again.n, again.pairs, again.constant, again.sign) == (
        ising.n,
        ising.pairs,
        ising.constant,
        ising.sign,
    )
    assert np.array_equal(again.h, ising.h) and np.array_equal(again.J, ising.J)
    bits = np.array(list(itertools.product([0, 1], repeat=6)))
    assert np.array_equal(
        back.objective_qubo.evaluate(bits), formulation.objective_qubo.evaluate(bits)
    )
