"""The forms every kind reduces to: a QUBO in the problem's own sense, and its Ising model.

The QUBO keeps the problem's own sense and units (so objectives read as the user wrote
them); the Ising model is what circuits and diagonal simulators consume.
Spin convention: bit x_i = 1 <-> z_i = -1 (qubit |1>), so x_i = (1 - z_i) / 2.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BitArray = npt.NDArray[np.int8]

CANCELLATION_TOLERANCE = 1e-12  # relative to the largest coefficient


@dataclass(frozen=True, eq=False)
class Qubo:
    """``offset + linear . x + sum quad_k x_i x_j`` over sorted pairs (i < j), in ``sense``."""

    n: int
    linear: FloatArray
    pairs: tuple[tuple[int, int], ...]
    quad: FloatArray
    offset: float
    sense: str  # "min" | "max"

    def __reduce__(self) -> tuple[object, ...]:
        return _in_band(self)

    def evaluate(self, bits: npt.ArrayLike) -> FloatArray:
        """Objective of each row of 0/1 bits (shape (..., n))."""
        x = np.asarray(bits, dtype=np.float64)
        value = self.offset + x @ self.linear
        if self.pairs:
            i, j = self._pair_index
            value = value + (x[..., i] * x[..., j]) @ self.quad
        return np.asarray(value, dtype=np.float64)

    @cached_property
    def _pair_index(self) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        array = np.asarray(self.pairs, dtype=np.intp).reshape(-1, 2)
        return array[:, 0], array[:, 1]

    def minimisation_form(self) -> tuple[FloatArray, FloatArray]:
        """``(a, M)`` with M symmetric, zero diagonal: ``sign * (objective - offset)`` is
        ``a . x + x'Mx / 2``, where sign = -1 for a max problem. Local searches use it."""
        sign = -1.0 if self.sense == "max" else 1.0
        matrix = np.zeros((self.n, self.n))
        if self.pairs:
            i, j = self._pair_index
            np.add.at(matrix, (i, j), sign * self.quad)
            np.add.at(matrix, (j, i), sign * self.quad)
        return sign * self.linear, matrix

    def to_ising(self) -> Ising:
        """The minimisation Ising model whose energy equals ``s * objective`` (s = -1 for max)."""
        s = -1.0 if self.sense == "max" else 1.0
        a, b = s * self.linear, s * self.quad
        h = -a / 2.0
        if self.pairs:
            i, j = self._pair_index
            quarter = b / 4.0
            h -= np.bincount(i, quarter, self.n) + np.bincount(j, quarter, self.n)
        # Where the field cancels exactly (MaxCut's does everywhere) rounding leaves ~1e-16;
        # make it zero, so shapes, templates and the simulator see no linear field at all.
        scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))
        h[np.abs(h) <= CANCELLATION_TOLERANCE * scale] = 0.0
        constant = s * self.offset + a.sum() / 2.0 + b.sum() / 4.0
        keep = b != 0.0
        pairs = (
            self.pairs
            if keep.all()
            else tuple(p for p, k in zip(self.pairs, keep, strict=True) if k)
        )
        return Ising(self.n, h, pairs, b[keep] / 4.0, float(constant), s)


@dataclass(frozen=True, eq=False)
class Ising:
    """Energy ``constant + h . z + sum J_k z_i z_j`` to minimise; ``sign`` maps back to the QUBO."""

    n: int
    h: FloatArray
    pairs: tuple[tuple[int, int], ...]
    J: FloatArray
    constant: float
    sign: float  # objective = sign * energy

    def __reduce__(self) -> tuple[object, ...]:
        return _in_band(self)

    @property
    def linear_support(self) -> tuple[int, ...]:
        return tuple(int(i) for i in np.flatnonzero(self.h != 0.0))


def assemble(
    n: int, linear: FloatArray, quad: dict[tuple[int, int], float], offset: float, sense: str
) -> Qubo:
    """A :class:`Qubo` from summed pair coefficients, dropping pairs that weigh nothing."""
    pairs = tuple(sorted(p for p, c in quad.items() if c != 0.0))
    coefficients = np.array([quad[p] for p in pairs], dtype=np.float64)
    return Qubo(n, linear, pairs, coefficients, float(offset), sense)


# Pickled with their arrays as bytes, in the pickle itself: Dask sends every NumPy array of a
# payload as a frame of its own, and a classical task of a thousand small problems carried
# five thousand frames of a few dozen bytes each (the cached pair index is not sent either).
def _in_band(form: Qubo | Ising) -> tuple[object, ...]:
    packed = tuple(
        np.ascontiguousarray(v, dtype=np.float64).tobytes() if isinstance(v, np.ndarray) else v
        for v in map(form.__getattribute__, _init_fields(type(form)))
    )
    return _rebuilt, (type(form), packed)


def _init_fields(cls: type[Qubo] | type[Ising]) -> tuple[str, ...]:
    """The fields a form is built from, in order (looked up once a class: a large batch
    pickles thousands of forms)."""
    names = _INIT_FIELDS.get(cls)
    if names is None:
        names = _INIT_FIELDS[cls] = tuple(f.name for f in fields(cls) if f.init)
    return names


_INIT_FIELDS: dict[type, tuple[str, ...]] = {}


def _rebuilt(cls: type[Qubo] | type[Ising], values: tuple[Any, ...]) -> Qubo | Ising:
    arrays: list[Any] = [
        np.frombuffer(v, dtype=np.float64).copy() if isinstance(v, bytes) else v for v in values
    ]
    return cls(*arrays)
