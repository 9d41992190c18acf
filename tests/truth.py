"""Independent truth for tests: objectives and brute-force optima straight from raw records.

Deliberately shares no code with pipeline/: a bug in the formulation cannot hide here.
"""

from __future__ import annotations

import itertools
from typing import Any


def objective(record: dict[str, Any], solution: str) -> float:
    x = [int(c) for c in solution]
    kind = record["kind"]
    if kind == "maxcut":
        return float(
            sum((e[2] if len(e) == 3 else 1) for e in record["edges"] if x[e[0]] != x[e[1]])
        )
    if kind == "qubo":
        value = float(record.get("offset", 0))
        value += sum(c * x[i] for i, c in record.get("linear", []))
        value += sum(c * x[i] * x[j] for i, j, c in record.get("quadratic", []))
        return value
    mu, sigma, q = record["mu"], record["sigma"], record["risk"]
    n = len(mu)
    return sum(mu[i] * x[i] for i in range(n)) - q * sum(
        sigma[i][j] * x[i] * x[j] for i in range(n) for j in range(n)
    )


def feasible(record: dict[str, Any], solution: str) -> bool:
    return record["kind"] != "portfolio" or solution.count("1") == record["budget"]


def sense(record: dict[str, Any]) -> str:
    """The record's own sense: MaxCut and portfolio maximise; a QUBO minimises unless told."""
    if record["kind"] == "qubo":
        return str(record.get("sense", "min"))
    return "max"


def brute_force(record: dict[str, Any]) -> float:
    """Best objective over every feasible assignment, in the record's own sense."""
    n = len(record["mu"]) if record["kind"] == "portfolio" else record["n"]
    values = [
        objective(record, "".join(map(str, bits)))
        for bits in itertools.product([0, 1], repeat=n)
        if feasible(record, "".join(map(str, bits)))
    ]
    return min(values) if sense(record) == "min" else max(values)
