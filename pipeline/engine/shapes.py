"""Shape keys: problems with equal keys share one compiled circuit template.

Two problems share a template when their circuits differ only in weights: same qubit
count, same interaction pairs, same qubits carrying a linear field, same QAOA depth and
same backend target. Weights and angles are circuit parameters, so they stay out of it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

from pipeline.formulation import Ising


@dataclass(frozen=True)
class ShapeKey:
    n_qubits: int
    pairs: tuple[tuple[int, int], ...]
    linear: tuple[int, ...]
    reps: int
    target: str

    @cached_property
    def digest(self) -> str:
        content = json.dumps(
            [self.n_qubits, self.pairs, self.linear, self.reps, self.target], separators=(",", ":")
        )
        return hashlib.sha256(content.encode()).hexdigest()

    @property
    def label(self) -> str:
        """Short, readable and unique: qubits, pairs, depth, digest."""
        return f"q{self.n_qubits}-e{len(self.pairs)}-p{self.reps}-{self.digest[:12]}"


def shape_of(ising: Ising, reps: int, target: str) -> ShapeKey:
    """A problem's shape; a linear field on any qubit puts one on every qubit.

    Linear coefficients vanish by coincidence (a QUBO's diagonal cancelling its
    couplings), and a zero-angle RZ costs nothing, so keying on the exact support
    would split same-structure problems into needless extra templates.
    """
    linear = tuple(range(ising.n)) if ising.linear_support else ()
    return ShapeKey(ising.n, ising.pairs, linear, reps, target)
