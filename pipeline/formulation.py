"""One canonical form for every problem kind: a QUBO, and from it a minimisation Ising model.

The QUBO keeps the problem's own sense and units (so objectives read as the user
wrote them); the Ising model is what circuits and diagonal simulators consume
(see :mod:`pipeline.kinds.forms`). Each kind builds its own QUBOs; this module only
asks the kind registry, so it never branches on kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pipeline.kinds import ProblemSpec, kind_of
from pipeline.kinds.forms import BitArray, FloatArray, Ising, Qubo
from pipeline.kinds.portfolio import penalty as portfolio_penalty

__all__ = [
    "BitArray",
    "FloatArray",
    "Formulation",
    "Ising",
    "Qubo",
    "bits_from_string",
    "bits_to_string",
    "formulate",
    "objective",
    "portfolio_penalty",
    "sense_of",
]


@dataclass(frozen=True, eq=False)
class Formulation:
    """What the solvers need from a problem: its QUBOs and hard constraints.

    Picklable plain data (it travels to Dask workers): ``qubo`` is what the quantum path
    samples (constraint penalties included); ``objective_qubo`` is the problem's own
    objective, in its own sense and units, which every reported objective comes from.
    """

    spec: ProblemSpec
    qubo: Qubo  # for the quantum path; includes constraint penalties
    cardinality: int | None = None  # sum(x) == cardinality, if constrained
    objective_qubo: Qubo = field(kw_only=True)
    ising: Ising = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ising", self.qubo.to_ising())

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def n(self) -> int:
        return self.qubo.n

    @property
    def sense(self) -> str:
        """'min' or 'max': the sense of :meth:`objective`."""
        return self.objective_qubo.sense

    def feasible(self, bits: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        x = np.asarray(bits)
        if self.cardinality is None:
            return np.ones(x.shape[:-1], dtype=bool)
        return np.asarray(x.sum(axis=-1) == self.cardinality)

    def objective(self, bits: npt.ArrayLike) -> FloatArray:
        """The problem's own objective (no penalties), in its own sense and units."""
        return self.objective_qubo.evaluate(bits)


def formulate(spec: ProblemSpec) -> Formulation:
    kind = kind_of(spec)
    own = kind.objective_qubo(spec)
    return Formulation(
        spec, kind.quantum_qubo(spec, own), kind.cardinality(spec), objective_qubo=own
    )


def objective(spec: ProblemSpec, bits: npt.ArrayLike) -> FloatArray:
    """Objective of each row of bits, computed from the spec as submitted."""
    return kind_of(spec).objective_qubo(spec).evaluate(bits)


def sense_of(spec: ProblemSpec) -> str:
    return kind_of(spec).sense(spec)


def bits_from_string(solution: str) -> BitArray:
    return np.frombuffer(solution.encode(), dtype=np.uint8).astype(np.int8) - ord("0")


def bits_to_string(bits: npt.ArrayLike) -> str:
    return "".join("1" if b else "0" for b in np.asarray(bits).ravel())
