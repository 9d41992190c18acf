"""Problem model and formulation: canonical keys, objectives, QUBO -> Ising, portfolio penalty.

Every objective here is checked against an evaluator written in this file from the raw
spec fields, so the formulation is never its own oracle.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.formulation import (
    Ising,
    Qubo,
    formulate,
    objective,
    portfolio_penalty,
    sense_of,
)
from pipeline.kinds import UnknownKindError
from pipeline.model import (
    SPEC_TYPES,
    PortfolioSpec,
    ProblemSpec,
    canonical_content,
    canonical_json,
    content_hash,
    idempotency_key,
    n_variables,
    semantic_issues,
    spec_from_json,
    spec_from_record,
    spec_to_record,
)

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def spec(document: dict[str, Any]) -> ProblemSpec:
    """A validated spec that also passes the semantic checks."""
    built: ProblemSpec = SPEC_TYPES[document["kind"]].model_validate(document)  # type: ignore[assignment]
    assert semantic_issues(built, 2_000, 200_000) == []
    return built


def key_of(document: dict[str, Any]) -> str:
    return idempotency_key(spec(document))


def all_bits(n: int) -> np.ndarray:
    return np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.int8)


# --- independent evaluators, straight from the contract's formulas -------------------------


def cut_weight(document: dict[str, Any], x: tuple[int, ...]) -> float:
    return sum((e[2] if len(e) == 3 else 1) for e in document["edges"] if x[e[0]] != x[e[1]])


def qubo_value(document: dict[str, Any], x: tuple[int, ...]) -> float:
    value = document.get("offset", 0)
    value += sum(c * x[i] for i, c in document.get("linear", []))
    value += sum(c * x[i] * x[j] for i, j, c in document.get("quadratic", []))
    return value


def portfolio_value(document: dict[str, Any], x: tuple[int, ...]) -> float:
    mu, sigma, q = document["mu"], document["sigma"], document["risk"]
    n = len(mu)
    ret = sum(mu[i] * x[i] for i in range(n))
    var = sum(x[i] * sigma[i][j] * x[j] for i in range(n) for j in range(n))
    return ret - q * var


def reference(document: dict[str, Any], x: tuple[int, ...]) -> float:
    evaluators = {"maxcut": cut_weight, "qubo": qubo_value, "portfolio": portfolio_value}
    return evaluators[document["kind"]](document, x)


def ising_energy(ising: Ising, z: np.ndarray) -> float:
    energy = ising.constant + float(np.dot(ising.h, z))
    for (i, j), coupling in zip(ising.pairs, ising.J, strict=True):
        energy += coupling * z[i] * z[j]
    return energy


def scale(qubo: Qubo) -> float:
    return 1.0 + abs(qubo.offset) + float(np.abs(qubo.linear).sum() + np.abs(qubo.quad).sum())


# --- strategies ---------------------------------------------------------------------------

coefficient = st.one_of(
    st.integers(-9, 9),
    st.floats(-9, 9, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 3)),
)


@st.composite
def maxcut_documents(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 7))
    pairs = draw(st.lists(st.sampled_from(list(itertools.combinations(range(n), 2)) or [None])))
    edges = []
    for pair in dict.fromkeys(p for p in pairs if p is not None):
        u, v = pair if draw(st.booleans()) else pair[::-1]
        edges.append([u, v] if draw(st.booleans()) else [u, v, draw(coefficient)])
    return {"kind": "maxcut", "n": n, "edges": edges}


@st.composite
def qubo_documents(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 7))
    variables = draw(st.lists(st.integers(0, n - 1), unique=True))
    linear = [[i, draw(coefficient)] for i in variables]
    # Unordered pairs, diagonal included (x_i * x_i = x_i); each pair once, either orientation.
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
            unique_by=frozenset,
        )
    )
    quadratic = [[i, j, draw(coefficient)] for i, j in pairs]
    document: dict[str, Any] = {"kind": "qubo", "n": n, "linear": linear, "quadratic": quadratic}
    if draw(st.booleans()):
        document["offset"] = draw(coefficient)
    if draw(st.booleans()):
        document["sense"] = draw(st.sampled_from(["min", "max"]))
    return document


@st.composite
def portfolio_documents(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 7))
    mu = [draw(coefficient) for _ in range(n)]
    sigma = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i, n):
            sigma[i][j] = sigma[j][i] = draw(coefficient)
    return {
        "kind": "portfolio",
        "mu": mu,
        "sigma": sigma,
        "budget": draw(st.integers(0, n)),
        "risk": draw(st.sampled_from([0, 0.5, 1, 2.25])),
    }


any_document = st.one_of(maxcut_documents(), qubo_documents(), portfolio_documents())


# --- canonical content and the default key ------------------------------------------------

BASE_MAXCUT = {"kind": "maxcut", "n": 4, "edges": [[0, 1], [1, 2, 2.5], [2, 3, 1]]}


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param({"edges": [[2, 3, 1], [0, 1], [1, 2, 2.5]]}, id="edge-order"),
        pytest.param({"edges": [[1, 0], [2, 1, 2.5], [3, 2, 1]]}, id="u-v-swapped"),
        pytest.param({"edges": [[0, 1, 1.0], [1, 2, 2.5], [2, 3, 1.0]]}, id="1-vs-1.0"),
        pytest.param({"edges": [[0, 1, 1], [1, 2, 2.5], [2, 3]]}, id="explicit-default-weight"),
        pytest.param({"priority": 7}, id="priority"),
        pytest.param({"tenant": "someone-else"}, id="tenant"),
        pytest.param({"deadline": "2030-01-01T00:00:00+00:00"}, id="deadline"),
        pytest.param({"route": "auto"}, id="route-auto-is-default"),
        pytest.param(
            {"edges": [[3, 2, 1.0], [2, 1, 2.5], [1, 0]], "priority": -3, "tenant": "t"},
            id="everything-at-once",
        ),
    ],
)
def test_same_problem_written_two_ways_has_one_key(variant: dict[str, Any]) -> None:
    assert key_of(BASE_MAXCUT | variant) == key_of(BASE_MAXCUT)
    assert canonical_json(spec(BASE_MAXCUT | variant)) == canonical_json(spec(BASE_MAXCUT))


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param({"route": "quantum"}, id="route-quantum"),
        pytest.param({"route": "classical"}, id="route-classical"),
        pytest.param({"reps": 2}, id="reps"),
        pytest.param({"shots": 2048}, id="shots"),
        pytest.param({"edges": [[0, 1], [1, 2, 2.5], [2, 3, 2]]}, id="weight"),
        pytest.param({"edges": [[0, 1], [1, 2, 2.5000001], [2, 3, 1]]}, id="weight-tiny"),
        pytest.param({"edges": [[0, 1], [1, 2, 2.5]]}, id="edge-removed"),
        pytest.param({"edges": [[0, 2], [1, 2, 2.5], [2, 3, 1]]}, id="other-edge"),
        pytest.param({"n": 5}, id="n"),
    ],
)
def test_different_problem_has_different_key(variant: dict[str, Any]) -> None:
    assert key_of(BASE_MAXCUT | variant) != key_of(BASE_MAXCUT)


def test_reps_and_shots_values_are_part_of_the_key() -> None:
    keys = {key_of(BASE_MAXCUT | {"reps": r, "shots": s}) for r in (1, 2) for s in (100, 200)}
    assert len(keys) == 4


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(
            {"kind": "qubo", "n": 2, "linear": [[0, 1], [1, -2.0]], "quadratic": [[0, 1, 3]]},
            {
                "kind": "qubo",
                "n": 2,
                "linear": [[1, -2], [0, 1.0]],
                "quadratic": [[1, 0, 3.0]],
                "offset": 0,
                "sense": "min",
            },
            id="qubo-order-orientation-defaults",
        ),
        pytest.param(
            {
                "kind": "portfolio",
                "mu": [1, 2],
                "sigma": [[1, 0.5], [0.5, 2]],
                "budget": 1,
                "risk": 1,
            },
            {
                "kind": "portfolio",
                "mu": [1.0, 2.0],
                "sigma": [[1.0, 0.5], [0.5, 2.0]],
                "budget": 1,
                "risk": 1.0,
                "tenant": "x",
            },
            id="portfolio-ints-vs-floats",
        ),
    ],
)
def test_other_kinds_canonicalise(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert key_of(first) == key_of(second)


@pytest.mark.parametrize(
    "variant",
    [
        {"sense": "max"},
        {"offset": 1},
        {"quadratic": [[0, 1, 4]]},
        {"linear": [[0, 1]]},
    ],
)
def test_qubo_content_changes_change_the_key(variant: dict[str, Any]) -> None:
    base = {"kind": "qubo", "n": 2, "linear": [[0, 1], [1, -2]], "quadratic": [[0, 1, 3]]}
    assert key_of(base | variant) != key_of(base)


def test_kinds_do_not_collide() -> None:
    maxcut = {"kind": "maxcut", "n": 2, "edges": []}
    qubo = {"kind": "qubo", "n": 2}
    assert key_of(maxcut) != key_of(qubo)


def test_explicit_key_wins() -> None:
    assert key_of(BASE_MAXCUT | {"key": "mine-1"}) == "mine-1"
    other = {"kind": "qubo", "n": 3, "key": "mine-1"}
    assert key_of(other) == "mine-1"


def test_default_key_is_the_content_hash() -> None:
    built = spec(BASE_MAXCUT)
    assert idempotency_key(built) == f"sha256:{content_hash(built)}"
    assert len(content_hash(built)) == 64


@PROPERTY
@given(any_document, st.randoms(use_true_random=False))
def test_key_ignores_order_orientation_and_scheduling_hints(
    document: dict[str, Any], rng: Any
) -> None:
    shuffled = dict(document)
    if document["kind"] == "maxcut":
        edges = [list(e) for e in document["edges"]]
        rng.shuffle(edges)
        for e in edges:
            if rng.random() < 0.5:
                e[0], e[1] = e[1], e[0]
        shuffled["edges"] = edges
    elif document["kind"] == "qubo":
        linear, quadratic = list(document["linear"]), [list(t) for t in document["quadratic"]]
        rng.shuffle(linear)
        rng.shuffle(quadratic)
        for t in quadratic:
            t[0], t[1] = t[1], t[0]
        shuffled |= {"linear": linear, "quadratic": quadratic}
    shuffled |= {"priority": rng.randint(-5, 5), "tenant": f"t{rng.randint(0, 9)}"}
    assert key_of(shuffled) == key_of(document)


@PROPERTY
@given(any_document)
def test_record_round_trip_keeps_key_and_objective(document: dict[str, Any]) -> None:
    original = spec(document | {"priority": 3, "route": "classical", "reps": 2})
    restored = spec_from_record(spec_to_record(original))
    assert idempotency_key(restored) == idempotency_key(original)
    assert canonical_content(restored) == canonical_content(original)
    assert restored.priority == 3
    bits = all_bits(n_variables(original))
    # Canonical edges are sorted, so sums run in another order: equal up to rounding.
    np.testing.assert_allclose(objective(restored, bits), objective(original, bits), atol=1e-9)


@PROPERTY
@given(any_document)
def test_stored_json_reads_back_as_the_record_does(document: dict[str, Any]) -> None:
    """A run reads stored specs with spec_from_json (one pass over the text): the same
    spec, of the same type, as spec_from_record on the parsed record."""
    options = {"priority": 3, "route": "classical", "reps": 2, "tenant": "t"}
    record = spec_to_record(spec(document | options | {"deadline": "2031-01-02T03:04:05Z"}))
    text = json.dumps(record)
    read = spec_from_json(text)
    assert type(read) is type(spec_from_record(record))
    assert read == spec_from_record(record)


def test_stored_json_that_fails_says_why_as_the_record_does() -> None:
    with pytest.raises(UnknownKindError):
        spec_from_json('{"kind": "tsp", "n": 3}')
    bad = {"kind": "maxcut", "n": 2, "edges": [[0, "1"]]}
    with pytest.raises(ValidationError) as caught:
        spec_from_json(json.dumps(bad))
    assert [error["loc"] for error in caught.value.errors()] == [("edges", 0, 1)]


# --- numbers: one error per bad number, at the field itself -------------------------------


@pytest.mark.parametrize(
    ("document", "loc"),
    [
        ({"kind": "maxcut", "n": 2, "edges": [[0, 1, math.nan]]}, ("edges", 0, 2)),
        ({"kind": "maxcut", "n": 2, "edges": [[0, 1, math.inf]]}, ("edges", 0, 2)),
        ({"kind": "maxcut", "n": 2, "edges": [[0, 1, 10**400]]}, ("edges", 0, 2)),
        ({"kind": "maxcut", "n": 2, "edges": [[0, "1"]]}, ("edges", 0, 1)),
        ({"kind": "maxcut", "n": 2, "edges": [[0, True]]}, ("edges", 0, 1)),
        ({"kind": "qubo", "n": 2, "offset": -math.inf}, ("offset",)),
        ({"kind": "qubo", "n": 2, "linear": [[0, -(10**309)]]}, ("linear", 0, 1)),
        (
            {
                "kind": "portfolio",
                "mu": [1, math.nan],
                "sigma": [[1, 0], [0, 1]],
                "budget": 1,
                "risk": 1,
            },
            ("mu", 1),
        ),
        ({"kind": "portfolio", "mu": [1], "sigma": [[1]], "budget": 1, "risk": 10**400}, ("risk",)),
        ({"kind": "portfolio", "mu": [1], "sigma": [[1]], "budget": 1, "risk": -1}, ("risk",)),
    ],
)
def test_bad_numbers_give_one_error_at_the_field(document: dict[str, Any], loc: tuple) -> None:
    with pytest.raises(ValidationError) as caught:
        SPEC_TYPES[document["kind"]].model_validate(document)
    assert [error["loc"] for error in caught.value.errors()] == [loc]


def test_largest_float_sized_integer_is_accepted() -> None:
    big = int(np.finfo(np.float64).max)
    built = SPEC_TYPES["maxcut"].model_validate({"kind": "maxcut", "n": 2, "edges": [[0, 1, big]]})
    assert built.edges[0][2] == big  # type: ignore[attr-defined]
    assert isinstance(built.edges[0][0], int)  # type: ignore[attr-defined]


# --- formulation against the independent evaluators ---------------------------------------


@PROPERTY
@given(any_document)
def test_qubo_and_objective_match_brute_force(document: dict[str, Any]) -> None:
    built = spec(document)
    n = n_variables(built)
    bits = all_bits(n)
    expected = np.array([reference(document, tuple(int(b) for b in x)) for x in bits])
    np.testing.assert_allclose(objective(built, bits), expected, rtol=1e-9, atol=1e-9)
    if not isinstance(built, PortfolioSpec):  # the portfolio QUBO carries the penalty
        qubo = formulate(built).qubo
        assert qubo.sense == sense_of(built)
        np.testing.assert_allclose(qubo.evaluate(bits), expected, rtol=1e-9, atol=1e-9)
        # One row at a time gives the same as the batch.
        assert float(qubo.evaluate(bits[-1])) == pytest.approx(expected[-1], abs=1e-9)


@PROPERTY
@given(any_document)
def test_ising_energy_equals_signed_qubo_everywhere(document: dict[str, Any]) -> None:
    qubo = formulate(spec(document)).qubo
    ising = qubo.to_ising()
    assert ising.sign == (-1.0 if qubo.sense == "max" else 1.0)
    assert ising.n == qubo.n
    assert all(0 <= i < j < qubo.n for i, j in ising.pairs)
    bits = all_bits(qubo.n)
    values = qubo.evaluate(bits)
    tolerance = 1e-9 * scale(qubo)
    for x, value in zip(bits, values, strict=True):
        z = 1 - 2 * x.astype(float)
        assert ising_energy(ising, z) == pytest.approx(ising.sign * value, abs=tolerance)


@PROPERTY
@given(
    st.integers(1, 8).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(coefficient, min_size=n, max_size=n),
            st.lists(
                st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), coefficient).filter(
                    lambda t: t[0] < t[1]
                ),
                unique_by=lambda t: (t[0], t[1]),
            ),
            coefficient,
            st.sampled_from(["min", "max"]),
        )
    )
)
def test_ising_of_any_qubo_up_to_8_variables(args: tuple) -> None:
    n, linear, terms, offset, sense = args
    terms = sorted(terms)
    qubo = Qubo(
        n,
        np.array(linear, dtype=float),
        tuple((i, j) for i, j, _ in terms),
        np.array([c for *_, c in terms], dtype=float),
        float(offset),
        sense,
    )
    ising = qubo.to_ising()
    s = -1.0 if sense == "max" else 1.0
    for x in all_bits(n):
        direct = offset + sum(linear[i] * x[i] for i in range(n))
        direct += sum(c * x[i] * x[j] for i, j, c in terms)
        z = 1 - 2 * x.astype(float)
        assert ising_energy(ising, z) == pytest.approx(s * direct, abs=1e-9 * scale(qubo))


@PROPERTY
@given(portfolio_documents())
def test_portfolio_penalty_keeps_feasible_values_and_sinks_infeasible_ones(
    document: dict[str, Any],
) -> None:
    built = spec(document)
    formulation = formulate(built)
    assert formulation.cardinality == document["budget"]
    bits = all_bits(len(document["mu"]))
    feasible = bits.sum(axis=1) == document["budget"]
    np.testing.assert_array_equal(formulation.feasible(bits), feasible)
    own = np.array([portfolio_value(document, tuple(int(b) for b in x)) for x in bits])
    penalised = formulation.qubo.evaluate(bits)
    np.testing.assert_allclose(formulation.objective(bits), own, rtol=1e-9, atol=1e-9)
    tolerance = 1e-9 * portfolio_penalty(built) * len(bits[0]) ** 2
    np.testing.assert_allclose(penalised[feasible], own[feasible], rtol=0, atol=tolerance)
    best_feasible = own[feasible].max()
    assert np.all(penalised[~feasible] < best_feasible)


def test_portfolio_hand_example() -> None:
    document = {
        "kind": "portfolio",
        "mu": [3, 1, 2],
        "sigma": [[2, 1, 0], [1, 1, 0.5], [0, 0.5, 1]],
        "budget": 2,
        "risk": 0.5,
    }
    built = spec(document)
    # x = (1, 0, 1): mu.x = 5; x'Sx = 2 + 1 + 0 + 0 = 3 -> 5 - 1.5 = 3.5
    assert float(objective(built, [1, 0, 1])) == pytest.approx(3.5)
    # x = (1, 1, 0): 4 - 0.5 * (2 + 1 + 2) = 1.5
    assert float(objective(built, [1, 1, 0])) == pytest.approx(1.5)
    assert float(formulate(built).qubo.evaluate([1, 0, 1])) == pytest.approx(3.5)


def test_maxcut_hand_example() -> None:
    built = spec({"kind": "maxcut", "n": 3, "edges": [[0, 1], [1, 2, 2.5], [2, 0, -1]]})
    values = objective(built, all_bits(3))
    # 000 001 010 011 100 101 110 111
    np.testing.assert_allclose(values, [0, 1.5, 3.5, 0, 0, 3.5, 1.5, 0])
    assert sense_of(built) == "max"
