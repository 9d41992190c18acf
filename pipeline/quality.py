"""How an answer is judged against its classical reference: one definition, in Python and SQL.

The report, the notebooks and the angle library all judge answers here, so ``qhopper
angles``, ``qhopper report`` and an analyst's DuckDB query give a class the same number.

* **Approximation ratio** ``min(|value|, |reference|) / max(|value|, |reference|)``, in
  (0, 1], 1 when the reference is matched: ``value / reference`` for a maximum above zero
  or a minimum below zero, ``reference / value`` for a minimum above zero (the textbook
  ratios, without needing the problem's sense). It is defined only where it means
  something: the reference has the same sign as the value (both nonzero) and is not near
  zero, i.e. ``|reference| >= NEAR_ZERO * objective_scale``.
* **Objective scale**: ``|offset| + sum |linear| + sum |quadratic|`` of the problem's own
  objective, the largest magnitude any assignment's objective can have. A reference
  below 1 % of it is near zero: a small absolute miss there reads as a huge ratio.
* **Absolute gap** ``|reference - value|``, in the problem's units: how every answer with
  a reference but no meaningful ratio is judged instead, shown apart from the ratios.

Rows written before ``objective_scale`` existed have none: for them only the sign rule
applies. Sizes are binned by powers of two (1-8, 9-16, 17-32, ...) so a table by size
grows with the log of the largest problem, not with the number of distinct sizes.
"""

from __future__ import annotations

import math

from pipeline.kinds.forms import Qubo

NEAR_ZERO = 0.01  # a reference below this share of the objective scale is near zero
FIRST_BIN = 8  # the first size bin is 1-8 variables; each next one doubles


def objective_scale(qubo: Qubo) -> float:
    """The largest magnitude the objective can take: the sum of its absolute coefficients."""
    return float(abs(qubo.offset) + abs(qubo.linear).sum() + abs(qubo.quad).sum())


def ratio(value: float | None, reference: float | None, scale: float | None) -> float | None:
    """The approximation ratio of ``value`` against ``reference``, or None where it means
    nothing (no reference, signs differ, a zero, a reference near zero for ``scale``)."""
    if value is None or reference is None or not math.isfinite(value * reference):
        return None
    if value * reference <= 0:
        return None
    if scale is not None and abs(reference) < NEAR_ZERO * scale:
        return None
    return min(abs(value), abs(reference)) / max(abs(value), abs(reference))


def gap(value: float | None, reference: float | None, scale: float | None) -> float | None:
    """``|reference - value|`` where there is a reference but no ratio; else None."""
    if value is None or reference is None or ratio(value, reference, scale) is not None:
        return None
    return abs(reference - value)


def relative_to(
    difference: float | None, reference: float | None, scale: float | None
) -> float | None:
    """A difference of two values (in the problem's units) as a share of the reference, so
    problems of every size and unit compare: of ``|reference|`` where a ratio against it means
    something (for a maximum answered below its reference, this is the difference of the two
    ratios), else of the objective's ``scale``; None with neither."""
    if difference is None:
        return None
    if reference and (scale is None or abs(reference) >= NEAR_ZERO * scale):
        return difference / abs(reference)
    return difference / scale if scale else None


def ratio_sql(value: str, reference: str = "reference_objective") -> str:
    """:func:`ratio` of column ``value`` against column ``reference`` as a DuckDB expression
    over a ``problems`` row (its ``objective_scale`` the scale)."""
    ref, v = reference, value
    return (
        f"CASE WHEN {v} IS NULL OR {ref} IS NULL OR {v} * {ref} <= 0 "
        f"OR abs({ref}) < {NEAR_ZERO} * coalesce(objective_scale, 0) THEN NULL "
        f"ELSE least(abs({v}), abs({ref})) / greatest(abs({v}), abs({ref})) END"
    )


def gap_sql(value: str) -> str:
    """:func:`gap` of column ``value`` as a DuckDB expression over a ``problems`` row."""
    ref = "reference_objective"
    return (
        f"CASE WHEN {value} IS NULL OR {ref} IS NULL OR ({ratio_sql(value)}) IS NOT NULL "
        f"THEN NULL ELSE abs({ref} - {value}) END"
    )


def size_bin(n: int) -> int:
    """The last size of ``n``'s bin: 8 for 1-8 variables, then 16, 32, 64, ..."""
    return max(FIRST_BIN, 1 << (max(n, 1) - 1).bit_length())


def size_bin_sql(n: str) -> str:
    """:func:`size_bin` of integer column ``n`` as a DuckDB expression."""
    return f"greatest({FIRST_BIN}, CAST(1 AS BIGINT) << length(bin(greatest({n}, 1) - 1)))"


def size_label(last: int) -> str:
    """A bin as people read it: 1-8, 9-16, 17-32 (with an en dash)."""
    first = 1 if last <= FIRST_BIN else last // 2 + 1
    return f"{first}–{last}"
