"""Reference answers: what the best classical answer to a problem is, to judge a quantum one.

Problems small enough (``exhaustive_max_variables``) are settled exactly by enumerating
every assignment, in blocks so memory stays small: proven, and cheaper than a solver's
start. Larger ones get a CP-SAT task with a short time limit (see flows/dispatch.py), and
the rows say when the input is a known public instance with a published optimum.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from pipeline.config import ClassicalSettings
from pipeline.formulation import Formulation
from pipeline.kinds.forms import BitArray

KNOWN_INSTANCES = Path(__file__).resolve().parent.parent / "data" / "benchmarks" / "known.json"
BLOCK_BITS = 16  # enumerate 2**16 assignments at a time


@dataclass(frozen=True)
class Reference:
    objective: float | None
    solver: str  # exhaustive | cpsat | none
    proven: bool
    note: str | None = None


def judge(
    formulation: Formulation,
    known: str | None,
    cpsat: tuple[float, bool] | None,
    limits: ClassicalSettings,
) -> Reference:
    """The classical answer a quantum answer is judged by: exact where the problem is small
    enough, else CP-SAT's (``cpsat``: its objective and whether proven), else none and why;
    its note also names the known public instance it is (``known``)."""
    reference = _solved(formulation, cpsat, limits)
    notes = "; ".join(n for n in (reference.note, known) if n)
    return dataclasses.replace(reference, note=notes or None)


def _solved(
    formulation: Formulation, cpsat: tuple[float, bool] | None, limits: ClassicalSettings
) -> Reference:
    n = formulation.ising.n
    if n <= limits.reference_exhaustive_max_variables:
        return exhaustive(formulation)
    if cpsat is not None:
        return Reference(cpsat[0], "cpsat", cpsat[1])
    if n > limits.reference_max_variables:
        note = f"no reference: {n} variables is over reference_max_variables"
        return Reference(None, "none", False, f"{note} ({limits.reference_max_variables})")
    return Reference(None, "none", False, "no reference: its CP-SAT task failed")


def exhaustive(formulation: Formulation) -> Reference:
    """The exact optimum over every feasible assignment, in the problem's own sense."""
    found = best_assignment(formulation)
    if found is None:
        return Reference(None, "exhaustive", True, "no feasible assignment")
    return Reference(found[0], "exhaustive", True)


def best_assignment(formulation: Formulation) -> tuple[float, BitArray] | None:
    """The best feasible assignment and its objective, by enumeration; None if none is
    feasible. The first best in enumeration order, so the answer is deterministic."""
    n = formulation.objective_qubo.n
    maximise = formulation.sense == "max"
    best: tuple[float, BitArray] | None = None
    low = min(n, BLOCK_BITS)
    low_bits = _assignments(low)
    for high in range(2 ** (n - low)):
        bits = low_bits if n == low else _with_high_bits(low_bits, high, n - low)
        feasible = np.flatnonzero(formulation.feasible(bits))
        if not feasible.size:
            continue
        values = formulation.objective(bits[feasible])
        pick = int(np.argmax(values) if maximise else np.argmin(values))
        value = float(values[pick])
        if best is None or (value > best[0] if maximise else value < best[0]):
            best = (value, bits[feasible[pick]].copy())
    return best


def _with_high_bits(low_bits: BitArray, high: int, count: int) -> BitArray:
    """``low_bits`` with the ``count`` bits of ``high`` appended to every row."""
    high_bits = ((high >> np.arange(count)) & 1).astype(np.int8)
    return np.concatenate([low_bits, np.broadcast_to(high_bits, (len(low_bits), count))], axis=1)


@cache
def _assignments(n: int) -> BitArray:
    """Every assignment of ``n`` bits, variable 0 first, in enumeration order (read-only:
    shared by every call, a run judges thousands of small problems)."""
    bits = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.int8)
    bits.setflags(write=False)
    return bits


@cache
def _known() -> dict[str, dict[str, object]]:
    if not KNOWN_INSTANCES.exists():
        return {}
    found: dict[str, dict[str, object]] = json.loads(KNOWN_INSTANCES.read_text())
    return found


def known_instance(input_hash: str) -> str | None:
    """A sentence naming the public instance with this content and its published optimum."""
    entry = _known().get(input_hash)
    if entry is None:
        return None
    return f"known instance {entry['instance']}: published optimum {entry['optimum']}"
