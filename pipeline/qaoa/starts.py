"""Where a batch's lockstep optimisation starts: its pilots, then transfer to everyone else.

Cold (no usable plan): a few pilot problems scan a grid of (gamma, beta) ramps and refine;
everyone else starts from the best of their optima. Warm (the angle library's entry for
the class, or published angles): pilots refine from the plan's candidates, measure what
transferring their optima costs in this batch, and the others take the pilots' consensus
with as few evaluations as that cost allows (none beyond the transfer, one line search
along the gammas, or Newton steps). Problems of one class with RMS-normalised weights
have nearly the same optimal angles (Brandao et al. 2018; Galda et al. 2021; Sureshbabu
et al. 2024), which is what makes transfer pay. What a problem spends after taking
another's angles is :mod:`pipeline.qaoa.transfer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.qaoa.angles import ClassAngles
from pipeline.qaoa.evaluators import Evaluator
from pipeline.qaoa.refine import refine
from pipeline.qaoa.transfer import FAR_OFF, gamma_line_search, step_where_transfer_loses

FloatArray = npt.NDArray[np.float64]

PILOTS = 3  # problems per batch that scan the grid; the rest start from their optima
GRID_GAMMAS = np.linspace(0.1, 1.5, 8)
GRID_BETAS = np.linspace(-np.pi / 2, np.pi / 2, 8, endpoint=False) + np.pi / 16
STALE_ENTRY = 2e-2  # one pilot gained this much from the library's entry: it is stale
# A start is sound when its energy is below this fraction of -sum |w|: a corrupt or stale
# library entry (random angles, the uniform state) gives about 0 and is replaced by the grid.
SOUND_START = 0.05


def cold_start(
    engine: Evaluator, count: int, reps: int, max_iterations: int
) -> tuple[tuple[FloatArray, FloatArray, FloatArray], ClassAngles]:
    """Angles for every problem from a grid scan of a few pilots, refined and transferred.

    Problems of one shape with normalised weights have nearly the same optimal angles
    (parameter concentration; Brandao et al. 2018, Galda et al. 2021), so the pilots'
    optima are tried as warm starts for everyone else instead of a full grid each, and
    everyone refines from the best (with the pilots' mean curvature as their Hessian's
    mixed terms). The pilots' spread (several candidates, not one) guards against
    transferring a bad basin. Also returns what the pilots found, for the class's followers.
    """
    rows = np.arange(min(count, PILOTS))
    gammas, betas, energy = _grid_start(engine, rows, reps)
    gammas, betas, energy, curvature = refine(engine, rows, gammas, betas, energy, max_iterations)
    pilots = _Pilots(rows, gammas, betas, energy, curvature, np.zeros(len(rows), dtype=bool))
    angles = np.empty((count, reps)), np.empty((count, reps)), np.empty(count)
    _put(angles, rows, (gammas, betas, energy))
    others = np.arange(len(rows), count)
    learned = _learned(pilots, _transfer_loss(engine, pilots, others))
    if others.size:
        tried = _best_of(engine, others, gammas, betas)[:3]
        hint = curvature.mean(axis=0)
        _put(angles, others, refine(engine, others, *tried, max_iterations, hint)[:3])
    return angles, learned


@dataclass(frozen=True)
class WarmStart:
    """Where a batch starts when its plan offers sound angles."""

    candidates: list[tuple[FloatArray, FloatArray]]  # best first
    refined: bool  # the first candidate is a library entry: an optimum of the class already
    pilots: int  # problems that try every candidate and refine
    tolerance: float  # the transfer loss the others accept without a step (the plan's)


@dataclass(frozen=True)
class _Pilots:
    """The pilots' refined angles, their curvature there, and which moved so far from their
    start that the entry they started at looks stale."""

    rows: npt.NDArray[np.intp]
    gammas: FloatArray
    betas: FloatArray
    energy: FloatArray
    curvature: FloatArray
    stale: npt.NDArray[np.bool_]


def warm_start(
    engine: Evaluator, count: int, reps: int, max_iterations: int, warm: WarmStart
) -> tuple[tuple[FloatArray, FloatArray, FloatArray], ClassAngles]:
    """Angles for every problem from the plan's candidates, in a handful of evaluations each.

    ``warm.pilots`` pilots (the plan's ``warm_pilots`` when the first candidate is a
    library entry, already an optimum of the class; else ``PILOTS``) try every candidate
    and refine from the best; a pilot whose best candidate is no sound start
    (``SOUND_START``) scans the grid instead. Each pilot is then evaluated at the others'
    optima, which measures what transfer loses in this batch, and every other problem
    spends what that loss warrants:

    - at most ``warm.tolerance`` (the plan's): it tries the pilots' mean optimum (and the
      library's entry) and keeps the better, 1-2 evaluations;
    - from a library entry that the pilots confirm (none moved more than ``STALE_ENTRY``)
      and a loss up to ``FAR_OFF``: one line search along its gammas from the pilots'
      mean optimum, 3 evaluations;
    - otherwise (a class whose optima do not concentrate, heavy-tailed weights, a stale
      entry): the tries, then one Newton step each, and those whose step gained more than
      ``FAR_OFF`` refine until a step no longer pays.

    Also returns what the pilots found, for the class's followers.
    """
    pilots = _warm_pilots(engine, np.arange(min(count, warm.pilots)), reps, max_iterations, warm)
    angles = np.empty((count, reps)), np.empty((count, reps)), np.empty(count)
    _put(angles, pilots.rows, (pilots.gammas, pilots.betas, pilots.energy))
    others = np.arange(len(pilots.rows), count)
    losses = _transfer_loss(engine, pilots, others)
    worst = float(np.max(losses, initial=0.0))
    learned = _learned(pilots, losses)
    if others.size == 0:
        return angles, learned
    hint = pilots.curvature.mean(axis=0)
    if warm.refined and warm.tolerance < worst <= FAR_OFF and not pilots.stale.any():
        # The class's optimum holds for this batch, up to each problem's own scale: what
        # is left of transfer's loss is mostly along gamma (the weights' spread after
        # normalising), so each problem takes one line search along it (3 evaluations).
        consensus = pilots.gammas.mean(axis=0), pilots.betas.mean(axis=0)
        _put(angles, others, gamma_line_search(engine, others, *consensus, hint))
        return angles, learned
    _put(angles, others, _try_consensus(engine, others, pilots, warm))
    if worst > warm.tolerance:
        step_where_transfer_loses(engine, others, angles, hint, max_iterations)
    return angles, learned


def _learned(pilots: _Pilots, losses: FloatArray) -> ClassAngles:
    """The pilots' mean optimum and curvature, and the mean loss transfer showed between
    them (inf where one pilot could not measure it)."""
    measured = len(pilots.rows) >= 2
    return ClassAngles(
        tuple(map(float, pilots.gammas.mean(axis=0))),
        tuple(map(float, pilots.betas.mean(axis=0))),
        tuple(map(float, pilots.curvature.mean(axis=0).ravel())),
        float(np.mean(losses)) if measured else np.inf,
    )


def _warm_pilots(
    engine: Evaluator,
    rows: npt.NDArray[np.intp],
    reps: int,
    max_iterations: int,
    warm: WarmStart,
) -> _Pilots:
    """Each pilot from its best candidate (the grid where that is no sound start), refined."""
    cand_g = np.array([g for g, _ in warm.candidates])
    cand_b = np.array([b for _, b in warm.candidates])
    gammas, betas, energy, best = _best_of(engine, rows, cand_g, cand_b)
    poor = np.flatnonzero(energy > -SOUND_START * _weight_sums(engine)[rows])
    if poor.size:
        gammas[poor], betas[poor], energy[poor] = _grid_start(engine, rows[poor], reps)
    started = energy.copy()
    # Pilots share one basin when they start at one library entry and their landscapes
    # differ only by weights (no linear field: with one, as in QUBOs, signs and fields move
    # each problem's optimum and curvature too far for one pilot's Hessian to serve another).
    one_basin = (
        warm.refined
        and not poor.size
        and bool((best == best[0]).all())
        and not bool(np.any(engine.h[rows]))
    )
    gammas, betas, energy, curvature = _refine_pilots(
        engine, rows, gammas, betas, energy, max_iterations, one_basin
    )
    stale = (started - energy) / np.abs(energy) > STALE_ENTRY  # far from where they started
    return _Pilots(rows, gammas, betas, energy, curvature, stale)


def _best_of(
    engine: Evaluator, rows: npt.NDArray[np.intp], sets_g: FloatArray, sets_b: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, npt.NDArray[np.intp]]:
    """Every row tries the same angle sets (one call) and keeps its best: its angles, energy
    and which set it was."""
    values = engine.energies(
        rows,
        np.ascontiguousarray(np.broadcast_to(sets_g, (len(rows), *sets_g.shape))),
        np.ascontiguousarray(np.broadcast_to(sets_b, (len(rows), *sets_b.shape))),
    )
    best = values.argmin(axis=1)
    return sets_g[best].copy(), sets_b[best].copy(), values[np.arange(len(rows)), best], best


def _transfer_loss(engine: Evaluator, pilots: _Pilots, others: npt.NDArray[np.intp]) -> FloatArray:
    """What transfer costs in this batch: each pilot at the others' optima, relative to its
    own. One pilot, from a library entry: nothing, unless the entry looks stale. Pilots
    alone in their chunk (the class's followers are elsewhere, and their steps measure
    the class): not measured, inf, and no evaluation spent on it."""
    rows, gammas, betas = pilots.rows, pilots.gammas, pilots.betas
    if others.size == 0:
        return np.full(len(rows), np.inf)
    if len(rows) < 2:
        return np.where(pilots.stale, np.inf, 0.0)
    cross = engine.energies(
        rows,
        np.ascontiguousarray(np.broadcast_to(gammas, (len(rows), *gammas.shape))),
        np.ascontiguousarray(np.broadcast_to(betas, (len(rows), *betas.shape))),
    )
    np.fill_diagonal(cross, np.inf)
    loss: FloatArray = (cross.min(axis=1) - pilots.energy) / np.abs(pilots.energy)
    return loss


def _try_consensus(
    engine: Evaluator, others: npt.NDArray[np.intp], pilots: _Pilots, warm: WarmStart
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The others try the pilots' consensus (their mean optimum) and the class's entry."""
    extra = [warm.candidates[0]] if warm.refined else []
    tries_g = np.array([pilots.gammas.mean(axis=0)] + [g for g, _ in extra])
    tries_b = np.array([pilots.betas.mean(axis=0)] + [b for _, b in extra])
    gammas, betas, energy, _ = _best_of(engine, others, tries_g, tries_b)
    return gammas, betas, energy


def _put(
    angles: tuple[FloatArray, FloatArray, FloatArray],
    rows: npt.NDArray[np.intp],
    values: tuple[FloatArray, FloatArray, FloatArray],
) -> None:
    """Set ``rows`` of every problem's (gammas, betas, energy)."""
    for array, value in zip(angles, values, strict=True):
        array[rows] = value


def _refine_pilots(
    engine: Evaluator,
    pilots: npt.NDArray[np.intp],
    gammas: FloatArray,
    betas: FloatArray,
    energy: FloatArray,
    max_iterations: int,
    one_basin: bool,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Refine the pilots; when all start at one library entry, only the first measures a
    full Hessian.

    Pilots that start at the same optimum of their class sit in one basin, so the first
    pilot's curvature serves the others as their Hessian's mixed terms: at p=2 that saves
    24 of the 33 evaluations a full measurement costs, for each further pilot.
    """
    if not one_basin or len(pilots) < 2:
        return refine(engine, pilots, gammas, betas, energy, max_iterations)
    first = refine(engine, pilots[:1], gammas[:1], betas[:1], energy[:1], max_iterations)
    rest = refine(
        engine, pilots[1:], gammas[1:], betas[1:], energy[1:], max_iterations, first[3][0]
    )
    return (
        np.concatenate([first[0], rest[0]]),
        np.concatenate([first[1], rest[1]]),
        np.concatenate([first[2], rest[2]]),
        np.concatenate([first[3], rest[3]]),
    )


def _weight_sums(engine: Evaluator) -> FloatArray:
    """sum |w| of each problem's normalised weights: minus the lowest energy it could have."""
    return np.asarray(np.abs(engine.J).sum(axis=1) + np.abs(engine.h).sum(axis=1))


def _grid_start(
    engine: Evaluator, rows: npt.NDArray[np.intp], reps: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Scan the grid as linear ramps whose mean is the depth-1 angle pair; keep each best.

    The ramps follow the INTERP idea (Zhou et al., PRX 10, 021067): gamma grows and
    beta shrinks through the layers, which starts deeper circuits near good angles.
    """
    grid_g, grid_b = np.meshgrid(GRID_GAMMAS, GRID_BETAS, indexing="ij")
    sets = grid_g.size
    ramp_up = 2 * (np.arange(reps) + 0.5) / reps
    gammas = np.broadcast_to(grid_g.reshape(1, sets, 1) * ramp_up, (len(rows), sets, reps))
    betas = np.broadcast_to(grid_b.reshape(1, sets, 1) * ramp_up[::-1], (len(rows), sets, reps))
    energies = engine.energies(rows, np.ascontiguousarray(gammas), np.ascontiguousarray(betas))
    best = energies.argmin(axis=1)
    index = np.arange(len(rows))
    return gammas[index, best, :].copy(), betas[index, best, :].copy(), energies[index, best]
