"""One canonical form for every problem kind: a QUBO, and from it a minimisation Ising model.

The QUBO keeps the problem's own sense and units (so objectives read as the user
wrote them); the Ising model is what circuits and diagonal simulators consume.
Spin convention: bit x_i = 1 <-> z_i = -1 (qubit |1>), so x_i = (1 - z_i) / 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from pipeline.model import MaxCutSpec, PortfolioSpec, ProblemSpec, QuboSpec

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

    def to_ising(self) -> Ising:
        """The minimisation Ising model whose energy equals ``s * objective`` (s = -1 for max)."""
        s = -1.0 if self.sense == "max" else 1.0
        a, b = s * self.linear, s * self.quad
        h = -a / 2.0
        if self.pairs:
            i, j = self._pair_index
            np.subtract.at(h, i, b / 4.0)
            np.subtract.at(h, j, b / 4.0)
        # Where the field cancels exactly (MaxCut's does everywhere) rounding leaves ~1e-16;
        # make it zero, so shapes, templates and the simulator see no linear field at all.
        scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))
        h[np.abs(h) <= CANCELLATION_TOLERANCE * scale] = 0.0
        constant = s * self.offset + a.sum() / 2.0 + b.sum() / 4.0
        keep = b != 0.0
        pairs = tuple(p for p, k in zip(self.pairs, keep, strict=True) if k)
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

    @property
    def linear_support(self) -> tuple[int, ...]:
        return tuple(int(i) for i in np.flatnonzero(self.h != 0.0))


@dataclass(frozen=True, eq=False)
class Formulation:
    """What the solvers need from a problem: its QUBO (penalties included) and hard constraints."""

    spec: ProblemSpec
    qubo: Qubo  # for the quantum path; includes constraint penalties
    cardinality: int | None = None  # sum(x) == cardinality, if constrained
    ising: Ising = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ising", self.qubo.to_ising())

    def feasible(self, bits: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        x = np.asarray(bits)
        if self.cardinality is None:
            return np.ones(x.shape[:-1], dtype=bool)
        return np.asarray(x.sum(axis=-1) == self.cardinality)

    def objective(self, bits: npt.ArrayLike) -> FloatArray:
        """The problem's own objective (no penalties), in its own sense and units."""
        return objective(self.spec, bits)


def formulate(spec: ProblemSpec) -> Formulation:
    if isinstance(spec, MaxCutSpec):
        return Formulation(spec, _maxcut_qubo(spec))
    if isinstance(spec, QuboSpec):
        return Formulation(spec, _qubo_qubo(spec))
    return Formulation(spec, _portfolio_qubo(spec, penalised=True), cardinality=spec.budget)


def objective(spec: ProblemSpec, bits: npt.ArrayLike) -> FloatArray:
    """Objective of each row of bits, computed from the spec as submitted."""
    if isinstance(spec, PortfolioSpec):
        return _portfolio_qubo(spec, penalised=False).evaluate(bits)
    return formulate_unconstrained(spec).evaluate(bits)


def formulate_unconstrained(spec: MaxCutSpec | QuboSpec) -> Qubo:
    return _maxcut_qubo(spec) if isinstance(spec, MaxCutSpec) else _qubo_qubo(spec)


def sense_of(spec: ProblemSpec) -> str:
    return spec.sense if isinstance(spec, QuboSpec) else "max"


def _assemble(
    n: int, linear: FloatArray, quad: dict[tuple[int, int], float], offset: float, sense: str
) -> Qubo:
    pairs = tuple(sorted(p for p, c in quad.items() if c != 0.0))
    coefficients = np.array([quad[p] for p in pairs], dtype=np.float64)
    return Qubo(n, linear, pairs, coefficients, float(offset), sense)


def _maxcut_qubo(spec: MaxCutSpec) -> Qubo:
    """cut(x) = sum_w w (x_u + x_v - 2 x_u x_v)."""
    linear = np.zeros(spec.n)
    quad: dict[tuple[int, int], float] = {}
    for edge in spec.edges:
        u, v = sorted((int(edge[0]), int(edge[1])))
        w = float(edge[2]) if len(edge) == 3 else 1.0
        linear[u] += w
        linear[v] += w
        quad[(u, v)] = quad.get((u, v), 0.0) - 2.0 * w
    return _assemble(spec.n, linear, quad, 0.0, "max")


def _qubo_qubo(spec: QuboSpec) -> Qubo:
    linear = np.zeros(spec.n)
    quad: dict[tuple[int, int], float] = {}
    for i, c in spec.linear:
        linear[int(i)] += float(c)
    for i, j, c in spec.quadratic:
        if i == j:  # x_i^2 = x_i
            linear[int(i)] += float(c)
            continue
        pair = (int(min(i, j)), int(max(i, j)))
        quad[pair] = quad.get(pair, 0.0) + float(c)
    return _assemble(spec.n, linear, quad, float(spec.offset), spec.sense)


def portfolio_penalty(spec: PortfolioSpec) -> float:
    """A weight large enough that any budget violation costs more than any objective gain."""
    mu = np.abs(np.asarray(spec.mu, dtype=float)).sum()
    sigma = np.abs(np.asarray(spec.sigma, dtype=float)).sum()
    return float(1.0 + mu + float(spec.risk) * sigma)


def _portfolio_qubo(spec: PortfolioSpec, penalised: bool) -> Qubo:
    """mu.x - q x'Sx (maximised), optionally minus lambda (sum x - k)^2."""
    mu = np.asarray(spec.mu, dtype=float)
    sigma = np.asarray(spec.sigma, dtype=float)
    q, n, k = float(spec.risk), len(mu), spec.budget
    linear = mu - q * np.diag(sigma)
    quad: dict[tuple[int, int], float] = {}
    for i in range(n):
        for j in range(i + 1, n):
            quad[(i, j)] = -q * (sigma[i, j] + sigma[j, i])
    offset = 0.0
    if penalised:
        lam = portfolio_penalty(spec)
        linear = linear - lam * (1.0 - 2.0 * k)
        for pair in quad:
            quad[pair] -= 2.0 * lam
        offset -= lam * k * k
    return _assemble(n, linear, quad, offset, "max")


def bits_from_string(solution: str) -> BitArray:
    return np.frombuffer(solution.encode(), dtype=np.uint8).astype(np.int8) - ord("0")


def bits_to_string(bits: npt.ArrayLike) -> str:
    return "".join("1" if b else "0" for b in np.asarray(bits).ravel())
