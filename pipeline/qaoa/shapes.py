"""Shape keys: problems with equal keys share one compiled circuit template.

Two problems share a template when their circuits differ only in weights: same qubit
count, same interaction pairs, same qubits carrying a linear field, same QAOA depth and
same backend target. Weights and angles are circuit parameters, so they stay out of it.

On a backend the engine simulates exactly, the graph does not matter: each problem's
energies come from its own diagonal. There problems of one size and depth share a *pool*
shape, the complete interaction graph on their qubits, of which every graph of that size
is a special case (an absent pair is a coupling of weight 0, an identity gate), so a pool
still has a template that is exact on any backend, compiled once per size and depth.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property, lru_cache

from pipeline.formulation import Ising


@dataclass(frozen=True)
class ShapeKey:
    n_qubits: int
    pairs: tuple[tuple[int, int], ...]
    linear: tuple[int, ...]
    reps: int
    target: str
    pooled: bool = False  # a pool: any graph on n_qubits (pairs: the complete graph)

    @cached_property
    def digest(self) -> str:
        fields: list[object] = [self.n_qubits, self.pairs, self.linear, self.reps, self.target]
        if self.pooled:  # exact shapes keep the digests (and stored artifacts) they had
            fields.append("pool")
        content = json.dumps(fields, separators=(",", ":"))
        return hashlib.sha256(content.encode()).hexdigest()

    @property
    def label(self) -> str:
        """Short, readable and unique: qubits, pairs (or ``pool``), depth, digest."""
        structure = "pool" if self.pooled else f"e{len(self.pairs)}"
        return f"q{self.n_qubits}-{structure}-p{self.reps}-{self.digest[:12]}"


def is_pool_label(label: str | None) -> bool:
    """Whether a stored ``shape_key`` names a pool rather than one exact structure."""
    return label is not None and label.split("-")[1:2] == ["pool"]


def shape_of(ising: Ising, reps: int, target: str) -> ShapeKey:
    """A problem's shape; a linear field on any qubit puts one on every qubit.

    Linear coefficients vanish by coincidence (a QUBO's diagonal cancelling its
    couplings), and a zero-angle RZ costs nothing, so keying on the exact support
    would split same-structure problems into needless extra templates.
    """
    linear = tuple(range(ising.n)) if ising.linear_support else ()
    return ShapeKey(ising.n, ising.pairs, linear, reps, target)


def pool_of(ising: Ising, reps: int, target: str) -> ShapeKey:
    """The pool a problem joins where the backend is simulated exactly: its size, depth,
    target and whether it has a linear field (which halves the simulator's work when absent)."""
    return _pool(ising.n, bool(ising.linear_support), reps, target)


@lru_cache(maxsize=1024)
def _pool(n: int, linear: bool, reps: int, target: str) -> ShapeKey:
    """One key a pool (planning puts every claimed problem in one: the same key, hashed
    and compared by identity first, instead of a new one built for each)."""
    pairs = tuple((i, j) for i in range(n) for j in range(i + 1, n))
    return ShapeKey(n, pairs, tuple(range(n)) if linear else (), reps, target, pooled=True)


def batch_shape(ising: Ising, reps: int, target: str, pooled: bool) -> ShapeKey:
    """The shape a problem runs on: its pool where ``pooled`` (the backend simulates it
    exactly) and it has cost terms to tune, else its exact structure."""
    if pooled and (ising.pairs or ising.linear_support):
        return pool_of(ising, reps, target)
    return shape_of(ising, reps, target)
