"""Independent truth for tests: objectives and brute-force optima straight from raw records.

Deliberately shares no code with pipeline/: a bug in the formulation cannot hide here.
``objective`` reads one solution term by term in plain Python; ``brute_force`` evaluates
every assignment at once with NumPy (fast enough for the 20-variable published instances),
and tests/test_truth.py holds the two to each other and to values worked out by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BLOCK = 1 << 16  # assignments evaluated at a time


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


def variables(record: dict[str, Any]) -> int:
    return len(record["mu"]) if record["kind"] == "portfolio" else int(record["n"])


def objectives(record: dict[str, Any], bits: np.ndarray) -> np.ndarray:
    """The objective of each column of the 0/1 matrix ``bits`` (row k: variable k)."""
    kind = record["kind"]
    if kind == "maxcut":
        value = np.zeros(bits.shape[1])
        for edge in record["edges"]:
            value += float(edge[2] if len(edge) == 3 else 1) * (bits[edge[0]] ^ bits[edge[1]])
        return value
    if kind == "qubo":
        value = np.full(bits.shape[1], float(record.get("offset", 0)))
        for i, c in record.get("linear", []):
            value += float(c) * bits[i]
        for i, j, c in record.get("quadratic", []):
            value += float(c) * (bits[i] & bits[j])
        return value
    mu, sigma = np.asarray(record["mu"], dtype=float), np.asarray(record["sigma"], dtype=float)
    return mu @ bits - record["risk"] * np.sum(bits * (sigma @ bits), axis=0)


def brute_force(record: dict[str, Any]) -> float:
    """Best objective over every feasible assignment, in the record's own sense."""
    n = variables(record)
    best: list[float] = []
    for start in range(0, 1 << n, BLOCK):
        index = np.arange(start, min(1 << n, start + BLOCK))
        bits = ((index >> np.arange(n)[:, None]) & 1).astype(np.int8)  # bit k: variable k
        values = objectives(record, bits)
        if record["kind"] == "portfolio":
            values = values[bits.sum(axis=0) == record["budget"]]
        if values.size:
            best.append(float(values.min() if sense(record) == "min" else values.max()))
    return min(best) if sense(record) == "min" else max(best)
