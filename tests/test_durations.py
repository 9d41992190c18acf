"""The one duration parser: a number and a unit the caller takes, or bare seconds."""

from __future__ import annotations

import pytest

from pipeline.durations import SECONDS_PER_UNIT, parse_duration

ALL = tuple(SECONDS_PER_UNIT)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("30s", 30.0),
        ("0.5m", 30.0),
        ("250ms", 0.25),
        ("2h", 7200.0),
        ("1d", 86_400.0),
        (" 5 m ", 300.0),
        ("0", 0.0),
    ],
)
def test_a_number_and_a_unit_are_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text, ALL) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "1e3s", ".5s", "inf", "nan", "5 m s", "-"])
def test_anything_else_is_no_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text, ALL)


def test_only_the_callers_units_are_taken() -> None:
    assert parse_duration("500ms", ("ms", "s")) == 0.5
    with pytest.raises(ValueError, match="'d' is not one of ms, s"):
        parse_duration("2d", ("ms", "s"))


def test_a_sign_only_where_the_caller_takes_one() -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration("-1m", ALL)
    assert parse_duration("-1m", ALL, signed=True) == -60.0
    assert parse_duration("+1m", ALL, signed=True) == 60.0
