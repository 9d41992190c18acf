"""How answers are judged (pipeline.quality): the ratio where it means something, the gap
elsewhere, size bins; the DuckDB expressions the report and notebooks use agree with Python."""

from __future__ import annotations

import itertools

import duckdb
import numpy as np
import pytest

from pipeline.kinds.forms import Qubo
from pipeline.quality import (
    gap,
    gap_sql,
    objective_scale,
    ratio,
    ratio_sql,
    size_bin,
    size_bin_sql,
    size_label,
)

VALUES = (None, -12.0, -3.0, -0.05, 0.0, 0.08, 0.4536, 2.0, 10.0, 11.0)
SCALES = (None, 0.0, 1.0, 12.0, 1e4)


def test_the_ratio_is_the_textbook_one_and_never_leaves_zero_to_one() -> None:
    assert ratio(9.0, 10.0, 40.0) == pytest.approx(0.9)  # a maximum: value / reference
    assert ratio(-9.0, -10.0, 40.0) == pytest.approx(0.9)  # a minimum below zero
    assert ratio(12.5, 10.0, 40.0) == pytest.approx(0.8)  # a minimum above zero: ref / value
    assert ratio(10.0, 10.0, 40.0) == 1.0
    for value, reference, scale in itertools.product(VALUES, VALUES, SCALES):
        found = ratio(value, reference, scale)
        assert found is None or 0 < found <= 1


def test_a_reference_near_zero_or_of_the_other_sign_is_judged_by_its_gap() -> None:
    # The operator's QUBO: reference 0.08, best sample 0.4536 (the old ratio: -3.67).
    assert ratio(0.4536, 0.08, 12.0) is None and gap(0.4536, 0.08, 12.0) == pytest.approx(0.3736)
    assert ratio(-0.29, 0.08, None) is None and gap(-0.29, 0.08, None) == pytest.approx(0.37)
    assert ratio(0.0, 0.0, 1.0) is None and gap(0.0, 0.0, 1.0) == 0.0  # matched at zero
    assert ratio(0.4536, 0.08, 8.0) == pytest.approx(0.08 / 0.4536)  # 1 % of 8 is below 0.08
    assert ratio(0.4536, 0.08, None) is not None  # no scale (an old row): the sign rule only
    assert gap(9.0, 10.0, 40.0) is None and gap(None, 10.0, 1.0) is None


def test_the_objective_scale_bounds_every_objective() -> None:
    qubo = Qubo(3, np.array([1.0, -2.0, 0.5]), ((0, 1), (1, 2)), np.array([-3.0, 4.0]), -1.5, "min")
    assert objective_scale(qubo) == pytest.approx(12.0)
    bits = np.array(list(itertools.product([0, 1], repeat=3)))
    assert np.abs(qubo.evaluate(bits)).max() <= objective_scale(qubo)


def test_the_sql_judges_as_python_does() -> None:
    cases = list(itertools.product(VALUES, VALUES, SCALES))
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE problems (v DOUBLE, reference_objective DOUBLE, objective_scale DOUBLE)"
    )
    con.executemany("INSERT INTO problems VALUES (?, ?, ?)", cases)
    rows = con.execute(
        f"SELECT v, reference_objective, objective_scale, {ratio_sql('v')}, {gap_sql('v')} "
        "FROM problems"
    ).fetchall()
    for value, reference, scale, by_ratio, by_gap in rows:
        assert by_ratio == pytest.approx(ratio(value, reference, scale)), (value, reference, scale)
        assert by_gap == pytest.approx(gap(value, reference, scale)), (value, reference, scale)


def test_sizes_fall_in_power_of_two_bins_in_python_and_sql() -> None:
    sizes = [1, 2, 7, 8, 9, 16, 17, 32, 33, 64, 65, 128, 129, 1000, 1024, 1025, 5000]
    found = duckdb.sql(
        f"SELECT n, {size_bin_sql('n')} FROM unnest({sizes}) AS t(n) ORDER BY n"
    ).fetchall()
    assert [b for _, b in found] == [size_bin(n) for n in sizes]
    assert [size_label(size_bin(n)) for n in (1, 8, 9, 16, 17, 65, 128, 129)] == [
        "1–8",
        "1–8",
        "9–16",
        "9–16",
        "17–32",
        "65–128",
        "65–128",
        "129–256",
    ]
