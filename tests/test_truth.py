"""The independent oracle itself, against values computed by hand."""

from __future__ import annotations

import itertools

import pytest
from factories import problem
from truth import brute_force, feasible, objective

TRIANGLE = {"kind": "maxcut", "n": 3, "edges": [[0, 1], [1, 2, 2.5], [0, 2, 4]]}
# 1 - 2 x0 + 3 x1 - 4 x0 x1 + 0.5: x=00 -> 0.5, 10 -> -1.5, 01 -> 3.5, 11 -> -2.5
QUBO = {
    "kind": "qubo",
    "n": 2,
    "offset": 0.5,
    "linear": [[0, -2], [1, 3]],
    "quadratic": [[0, 1, -4]],
}
# mu.x - q x'Sx with q = 0.5: x=110 -> 0.1 + 0.2 - 0.5 (1 + 2 + 2 * 0.5) = -1.7
PORTFOLIO = {
    "kind": "portfolio",
    "mu": [0.1, 0.2, 0.3],
    "sigma": [[1, 0.5, 0], [0.5, 2, 0], [0, 0, 0.2]],
    "budget": 2,
    "risk": 0.5,
}


@pytest.mark.parametrize(
    ("solution", "value"), [("000", 0.0), ("100", 5.0), ("010", 3.5), ("001", 6.5), ("110", 6.5)]
)
def test_maxcut_objective_by_hand(solution: str, value: float) -> None:
    assert objective(TRIANGLE, solution) == pytest.approx(value)
    assert feasible(TRIANGLE, solution)


def test_maxcut_brute_force_is_the_heaviest_cut() -> None:
    assert brute_force(TRIANGLE) == pytest.approx(6.5)  # {2} | {0, 1}, or {0} | {1, 2} etc.
    assert brute_force({"kind": "maxcut", "n": 2, "edges": []}) == 0.0


@pytest.mark.parametrize(
    ("solution", "value"), [("00", 0.5), ("10", -1.5), ("01", 3.5), ("11", -2.5)]
)
def test_qubo_objective_by_hand(solution: str, value: float) -> None:
    assert objective(QUBO, solution) == pytest.approx(value)


def test_qubo_sense_defaults_to_min() -> None:
    """The product's default sense is "min": a record without one is minimised."""
    assert brute_force(QUBO) == pytest.approx(-2.5)
    assert brute_force({**QUBO, "sense": "min"}) == pytest.approx(-2.5)
    assert brute_force({**QUBO, "sense": "max"}) == pytest.approx(3.5)
    assert brute_force({"kind": "qubo", "n": 2, "offset": 7}) == pytest.approx(7.0)


def test_portfolio_objective_feasibility_and_optimum_by_hand() -> None:
    assert objective(PORTFOLIO, "110") == pytest.approx(-1.7)
    assert objective(PORTFOLIO, "101") == pytest.approx(0.4 - 0.5 * 1.2)  # -0.2
    assert objective(PORTFOLIO, "011") == pytest.approx(0.5 - 0.5 * 2.2)  # -0.6
    assert not feasible(PORTFOLIO, "111") and not feasible(PORTFOLIO, "100")
    assert feasible(PORTFOLIO, "011")
    # Maximised over the budget-2 portfolios only: "111" (0.6 - 0.5 * 4.2 = -1.5) is not one.
    assert brute_force(PORTFOLIO) == pytest.approx(-0.2)


@pytest.mark.parametrize("kind", ["maxcut", "qubo", "portfolio"])
@pytest.mark.parametrize("seed", range(6))
def test_brute_force_is_the_best_objective_of_every_feasible_string(kind: str, seed: int) -> None:
    """The vectorised enumeration against the plain-Python objective, string by string."""
    sense = ("min", "max")[seed % 2]
    record = problem(kind, 1 + seed, seed=seed, weights="mixed", span=(-9, 9), orient=True)
    if kind == "qubo":
        record["sense"] = sense
    strings = ["".join(map(str, bits)) for bits in itertools.product((0, 1), repeat=1 + seed)]
    values = [objective(record, s) for s in strings if feasible(record, s)]
    best = min(values) if kind == "qubo" and sense == "min" else max(values)
    assert brute_force(record) == pytest.approx(best, abs=1e-9)


def test_brute_force_crosses_its_block_boundary() -> None:
    """Past 2**16 assignments the enumeration runs in blocks: the optimum may sit in any."""
    linear = [
        [i, c] for i, c in enumerate([3, -2, 5, -7, 1, -1, 4, -3, 2, -5, 6, -4, 7, -6, 8, -8, 9])
    ]
    record = {"kind": "qubo", "n": 17, "linear": linear, "offset": 0.5}
    assert brute_force(record) == 0.5 + sum(min(0, c) for _, c in linear)
    assert brute_force({**record, "sense": "max"}) == 0.5 + sum(max(0, c) for _, c in linear)


def test_brute_force_takes_large_integer_coefficients() -> None:
    """Assignments are small integers; the coefficients multiplying them must not be."""
    assert brute_force({"kind": "maxcut", "n": 2, "edges": [[0, 1, 1000]]}) == 1000.0
    record = {"kind": "qubo", "n": 2, "linear": [[0, -300]], "quadratic": [[0, 1, -70_000]]}
    assert brute_force(record) == -70_300.0
