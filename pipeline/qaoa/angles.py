"""Starting angles for a batch: what the product learned about its class, then the literature.

A batch's problems share a *class*: kind, qubit count, the degree sequence of the
interaction graph (its structure, whatever the exact graph), depth and whether a linear
field is present. Optimal QAOA angles concentrate across the instances of a class
(Brandao et al. 2018; Galda et al. 2021), and weighted problems reuse them once each
problem's weights are divided by their root mean square (Sureshbabu et al., Quantum 8,
1231, 2024), which is how the engine normalises them. So a batch starts from, in order:

1. the best entry the angle library (:mod:`pipeline.qaoa.angle_store`) holds for its
   class: the angles an earlier batch of the class refined to, and the expectation ratio
   they reached;
2. the published fixed angles for regular MaxCut (Wurtz & Lykov 2021; ``data/angles/``),
   converted to the engine's convention (see ``data/angles/SOURCES.md``);
3. the library's entry one layer shallower, extended by one layer (INTERP, Zhou et al.);
4. only when none applies, the engine's grid scan.

This module is pure (no database): an :class:`AnglePlan` is plain picklable data that the
run core puts on a chunk's task; :func:`usable` is what the engine trusts of it.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.qaoa.angle_model import AngleModel, ModelSamples
from pipeline.qaoa.shapes import ShapeKey
from pipeline.vocabulary import RefineMode

FIXED_ANGLES = (
    Path(__file__).resolve().parents[2] / "data" / "angles" / "fixed_angles_regular_maxcut.csv"
)
# The table's convention -> the engine's (RMS-normalised Ising weights; data/angles/SOURCES.md).
TABLE_GAMMA_FACTOR = 0.25
TABLE_BETA_FACTOR = -1.0
# What an angle may be: beta has period pi (RX(2 pi) = -I); gamma acts on weights of RMS 1,
# where useful values are below 2 and nothing sensible is past 2 pi.
MAX_ABS_GAMMA = 2 * math.pi
DEFAULT_MIN_DEPTH_GAIN = 0.01  # an extra layer must raise the expectation ratio this much
# How much of the energy transferring angles between a batch's problems may lose before
# everyone takes a Newton step (about 0.05 points of expectation ratio on MaxCut).
DEFAULT_TRANSFER_TOLERANCE = 2e-3
# Pilots that refine from a library entry. Two measure what transfer loses in the batch
# (each at the other's optimum); one is the economy setting: the others trust the entry
# unless the pilot shows it stale, a class's second run in about 2.5 evaluations a problem.
DEFAULT_WARM_PILOTS = 2
# A problem that follows its class's pilots takes their angles with no evaluation of its own
# when the class's followers measured transfer losing less than this much of the energy
# (``TransferCheck``). On weighted 12-node 3-regular MaxCut at p=2 they measured 0.012-0.020
# under uniform and integer weights, where taking a pilot's angles loses 0.003 of
# expectation ratio, and 0.040-0.062 under exponential weights, where it loses 0.011.
DEFAULT_FREE_LOSS = 3e-2


@dataclass(frozen=True)
class AngleClass:
    """What problems must share for their optimal angles to concentrate."""

    kind: str
    n_qubits: int
    # The degree sequence, e.g. "3^12", or "5^2,3^8" (degree^count, descending); "any" for
    # a pool of mixed graphs (pipeline.qaoa.shapes).
    structure: str
    reps: int
    linear: bool

    @property
    def key(self) -> str:
        return f"{self.kind}/q{self.n_qubits}/d{self.structure}/p{self.reps}/{'h' if self.linear else 'noh'}"

    def at(self, reps: int) -> AngleClass:
        return AngleClass(self.kind, self.n_qubits, self.structure, reps, self.linear)

    @property
    def regular_degree(self) -> int | None:
        """D when every qubit has degree D (a D-regular interaction graph)."""
        parts = self.structure.split(",")
        if len(parts) != 1 or "^" not in parts[0]:
            return None
        degree, count = parts[0].split("^")
        return int(degree) if int(count) == self.n_qubits else None


def degree_sequence(n_qubits: int, pairs: Iterable[tuple[int, int]]) -> str:
    degrees = Counter({q: 0 for q in range(n_qubits)})
    for i, j in pairs:
        degrees[i] += 1
        degrees[j] += 1
    runs = Counter(degrees.values())
    return ",".join(f"{d}^{runs[d]}" for d in sorted(runs, reverse=True))


def class_of(kind: str, shape: ShapeKey, reps: int | None = None) -> AngleClass:
    """The class of a batch of ``kind`` problems on ``shape`` (at ``reps``, default the shape's)."""
    return AngleClass(
        kind,
        shape.n_qubits,
        "any" if shape.pooled else degree_sequence(shape.n_qubits, shape.pairs),
        shape.reps if reps is None else reps,
        bool(shape.linear),
    )


@dataclass(frozen=True)
class AngleSet:
    """One candidate: gammas and betas in the engine's convention, where it came from, and
    the expectation ratio it reached when it was recorded (``None`` when not known)."""

    gammas: tuple[float, ...]
    betas: tuple[float, ...]
    source: str  # "library", "fixed", "interp"
    ratio: float | None = None


@dataclass(frozen=True)
class ClassAngles:
    """What a class's pilots found, shared by every later chunk of the class in a run (and,
    through the library, by later runs): their mean optimum, their mean curvature there
    (the Hessian of the normalised energy, flattened; empty when not measured) and a loss
    (relative energy; inf: not known). From pilots, what transferring one pilot's optimum
    to another lost in their batch; on a following chunk's plan, what the pilot board knows
    following costs (the class's ``TransferCheck``). ``model``: where an earlier run's
    followers fitted one, each problem's angles from its features (followers then take
    its prediction and one line search instead of a Newton step)."""

    gammas: tuple[float, ...]
    betas: tuple[float, ...]
    curvature: tuple[float, ...] = ()
    loss: float = math.inf
    model: AngleModel | None = None

    @property
    def reps(self) -> int:
        return len(self.gammas)


@dataclass(frozen=True)
class TransferCheck:
    """What following measured in a chunk: how many of its problems, and what taking one
    problem's optimum of the class for another's loses on average (relative energy; see
    :func:`pipeline.qaoa.transfer.spread`). Costs no evaluation: it is read off the
    followers' Newton steps and the energies their answers need anyway; so are
    ``samples``, their features and optima, which the class's angle model is fitted on."""

    problems: int
    loss: float
    samples: ModelSamples | None = None


@dataclass(frozen=True)
class AnglePlan:
    """A batch's starting angles, best first, and the depth to run (<= the template's).

    Empty ``candidates``: the engine scans its grid. ``refined`` says whether the first
    candidate is already the optimum of an earlier batch of the class (a library entry),
    so that the engine refines less.
    """

    class_key: str
    reps: int
    candidates: tuple[AngleSet, ...] = ()
    depth_note: str = ""
    ratios_by_reps: tuple[tuple[int, float], ...] = field(default=())
    transfer_tolerance: float = DEFAULT_TRANSFER_TOLERANCE
    warm_pilots: int = DEFAULT_WARM_PILOTS
    # Set once the class's pilots have run: the chunk's problems follow them (no pilots).
    shared: ClassAngles | None = None
    refine: RefineMode = RefineMode.AUTO
    free_loss: float = DEFAULT_FREE_LOSS  # AUTO: below this loss, followers take it as is
    fields: bool = False  # the class has linear fields: its optima concentrate less

    @property
    def source(self) -> str:
        """Where the batch starts: library, fixed, interp, or grid (no candidate)."""
        return self.candidates[0].source if self.candidates else "grid"

    @property
    def refined(self) -> bool:
        return bool(self.candidates) and self.candidates[0].source == "library"


def usable(candidate: AngleSet, reps: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The candidate as (gammas, betas) arrays if it is sound at ``reps`` layers, else None.

    A library entry may be corrupt or stale (NaN, another depth, absurd values): such an
    entry is dropped here, and costs at most the evaluations of a fallback start.
    """
    try:
        gammas = np.asarray(candidate.gammas, dtype=np.float64)
        betas = np.asarray(candidate.betas, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if gammas.shape != (reps,) or betas.shape != (reps,):
        return None
    if not (np.isfinite(gammas).all() and np.isfinite(betas).all()):
        return None
    if np.abs(gammas).max() > MAX_ABS_GAMMA or np.abs(betas).max() > 4 * math.pi:
        return None
    if not np.abs(gammas).any():
        return None  # gamma = 0 everywhere: the uniform state, a saddle of every energy
    betas = (betas + math.pi / 2) % math.pi - math.pi / 2  # RX(2 (beta + pi)) = -RX(2 beta)
    return gammas, betas


@lru_cache(maxsize=1)
def _fixed_table(path: Path = FIXED_ANGLES) -> dict[tuple[int, int], tuple[AngleSet, float]]:
    table: dict[tuple[int, int], tuple[AngleSet, float]] = {}
    if not path.exists():
        return table
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            gammas = tuple(TABLE_GAMMA_FACTOR * float(g) for g in row["gammas"].split())
            betas = tuple(TABLE_BETA_FACTOR * float(b) for b in row["betas"].split())
            ratio = float(row["guaranteed_ratio"])
            table[int(row["degree"]), int(row["p"])] = (
                AngleSet(gammas, betas, "fixed", ratio),
                ratio,
            )
    return table


def fixed_angles(angle_class: AngleClass) -> AngleSet | None:
    """The published angles for MaxCut on a D-regular graph at this depth, if tabulated.

    Weighted graphs use them too: the engine divides weights by their RMS first.
    """
    if angle_class.kind != "maxcut" or angle_class.linear:
        return None
    degree = angle_class.regular_degree
    if degree is None:
        return None
    found = _fixed_table().get((degree, angle_class.reps))
    return None if found is None else found[0]


def interp(gammas: Sequence[float], betas: Sequence[float]) -> tuple[list[float], list[float]]:
    """INTERP (Zhou et al., PRX 10, 021067): depth-p angles extended to depth p + 1."""
    p = len(gammas)

    def extend(values: Sequence[float]) -> list[float]:
        padded = [0.0, *values, 0.0]  # [g]_0 = [g]_{p+1} = 0
        return [
            ((i - 1) / p) * padded[i - 1] + ((p - i + 1) / p) * padded[i] for i in range(1, p + 2)
        ]

    return extend(gammas), extend(betas)


def choose_reps(
    ratios_by_reps: dict[int, float], requested: int, min_depth_gain: float
) -> tuple[int, str]:
    """The shallowest depth <= ``requested`` past which the library shows no layer paying.

    ``ratios_by_reps``: the best expectation ratio the class reached at each depth. Depth
    p + 1 pays when it raised the ratio by at least ``min_depth_gain`` over depth p; with
    no evidence for a depth, the requested one runs.
    """
    reps = requested
    while reps > 1:
        lower, upper = ratios_by_reps.get(reps - 1), ratios_by_reps.get(reps)
        if lower is None or upper is None or upper - lower >= min_depth_gain:
            break
        reps -= 1
    if reps == requested:
        return reps, ""
    gain = ratios_by_reps[reps + 1] - ratios_by_reps[reps]
    return reps, (
        f"p={reps} instead of {requested}: one more layer raised the ratio by {gain:+.4f}"
        f" < {min_depth_gain:g}"
    )


def plan(
    angle_class: AngleClass,
    best_by_reps: dict[int, AngleSet],
    min_depth_gain: float | None = DEFAULT_MIN_DEPTH_GAIN,
    transfer_tolerance: float = DEFAULT_TRANSFER_TOLERANCE,
    warm_pilots: int = DEFAULT_WARM_PILOTS,
) -> AnglePlan:
    """A batch's plan from the library's best entry per depth for its class (any may be absent).

    ``angle_class.reps`` is the template's depth; ``min_depth_gain=None`` never lowers it.
    """
    ratios = {
        reps: entry.ratio
        for reps, entry in best_by_reps.items()
        if entry.ratio is not None and usable(entry, reps) is not None
    }
    reps, note = angle_class.reps, ""
    if min_depth_gain is not None:
        reps, note = choose_reps(ratios, angle_class.reps, min_depth_gain)
    at = angle_class.at(reps)
    candidates: list[AngleSet] = []
    stored = best_by_reps.get(reps)
    if stored is not None and usable(stored, reps) is not None:
        candidates.append(stored)
    fixed = fixed_angles(at)
    if fixed is not None:
        candidates.append(fixed)
    shallower = best_by_reps.get(reps - 1)
    if not candidates and shallower is not None and usable(shallower, reps - 1) is not None:
        gammas, betas = interp(shallower.gammas, shallower.betas)
        candidates.append(AngleSet(tuple(gammas), tuple(betas), "interp", None))
    return AnglePlan(
        at.key,
        reps,
        tuple(candidates),
        note,
        tuple(sorted(ratios.items())),
        transfer_tolerance,
        max(1, warm_pilots),
        fields=angle_class.linear,
    )
