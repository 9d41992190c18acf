"""Lockstep QAOA: every problem of a batch is optimised together on one compiled template.

Each optimiser step gathers the angle sets of every problem still improving into one
evaluation call: on a backend, one Estimator call (a V2 PUB with a (problems, sets,
parameters) array and one observable per problem); on a backend that declares an exact
statevector, the same numbers from the diagonal simulator (pipeline.engine.evaluators).
The optimiser:

1. divides each problem's Ising weights by their RMS, so one set of angles suits a class
   of problems whatever their weights (Sureshbabu et al. 2024);
2. starts from the batch's :class:`~pipeline.engine.angles.AnglePlan` when it has one
   (the angle library's best entry for the class, the published fixed angles), else
   scans a coarse grid of (gamma, beta) ramps, for a few pilot problems in one call;
3. refines the pilots with trust-region Newton steps from finite differences of the
   exact expectation, each problem stopping on its own when a step no longer pays;
4. starts every other problem of the batch from the best of the pilots' optima
   (warm start by parameter transfer), and refines them too only when the pilots show
   that transferring angles between problems of the batch loses more than a step gains.

The answer is the best sampled bitstring under the problem's true objective, feasible
samples first; ``expected_objective`` is the exact expectation of that true objective (in
the problem's own sense and units, no constraint penalty) in the QAOA state at the final
angles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.backends.base import Backend
from pipeline.backends.calls import BackendCaller
from pipeline.engine.angles import (
    DEFAULT_TRANSFER_TOLERANCE,
    DEFAULT_WARM_PILOTS,
    AnglePlan,
    usable,
)
from pipeline.engine.evaluators import BatchProblem, Evaluator, as_caller, choose_evaluator
from pipeline.engine.refine import FD_STEP, MAX_RADIUS, newton_step, refine
from pipeline.engine.sampling import best_sample, draw
from pipeline.engine.templates import CompiledTemplate

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PILOTS = 3  # problems per batch that scan the grid; the rest start from their optima
GRID_GAMMAS = np.linspace(0.1, 1.5, 8)
GRID_BETAS = np.linspace(-np.pi / 2, np.pi / 2, 8, endpoint=False) + np.pi / 16
# Warm starts: the pilots' optima are transferred as they are unless the pilots show that
# transfer loses more than the plan's ``transfer_tolerance`` of the energy, in which case
# everyone takes one Newton step.
FAR_OFF = 3e-2  # a problem whose one step gained this much refines on
STALE_ENTRY = 2e-2  # one pilot gained this much from the library's entry: it is stale
# A start is sound when its energy is below this fraction of -sum |w|: a corrupt or stale
# library entry (random angles, the uniform state) gives about 0 and is replaced by the grid.
SOUND_START = 0.05


@dataclass(frozen=True)
class QuantumAnswer:
    problem_id: str
    solution: str
    objective: float
    feasible: bool
    expected_objective: float
    evaluations: int
    reps: int
    shots: int
    gammas: tuple[float, ...]
    betas: tuple[float, ...]
    evaluator: str  # "fast" (exact diagonal simulator) or "estimator" (the backend's primitive)
    simulated_s: float = 0.0  # its share of the fast simulator's time; backend calls bill apart

    @property
    def angles(self) -> tuple[float, ...]:
        """Gammas then betas, as a row stores them."""
        return self.gammas + self.betas


def optimise_batch(
    template: CompiledTemplate,
    problems: list[BatchProblem],
    backend: Backend | BackendCaller,
    max_iterations: int,
    seed: int,
    evaluator: str = "auto",
    start: AnglePlan | None = None,
) -> list[QuantumAnswer]:
    """Optimise every problem's angles in lockstep, then sample each on the backend.

    Every backend call goes through ``backend`` as a :class:`BackendCaller` (a bare
    backend is called under the default policy). ``start``: the batch's starting angles
    and depth from the angle library (``None``: the grid, at the template's depth); an
    unsound candidate in it is ignored, so a corrupt plan costs evaluations, never answers.
    """
    if not problems:
        return []
    reps = template.shape.reps
    if start is not None and 1 <= start.reps <= reps:
        reps = start.reps  # the library showed a deeper circuit does not pay for this class
    offered = () if start is None else start.candidates
    checked = [(c.source, usable(c, reps)) for c in offered]
    sound = [angles for _, angles in checked if angles is not None]
    # The first sound candidate is a library entry: an optimum of the class already.
    refined = next((source for source, a in checked if a is not None), "") == "library"
    tolerance = DEFAULT_TRANSFER_TOLERANCE if start is None else start.transfer_tolerance
    warm_pilots = DEFAULT_WARM_PILOTS if start is None else start.warm_pilots
    caller = as_caller(backend)
    engine = choose_evaluator(evaluator, template, problems, caller, seed)
    if template.shape.pairs or template.shape.linear:
        if sound:
            gammas, betas, energy = _warm_start(
                engine,
                len(problems),
                reps,
                max_iterations,
                sound,
                refined,
                warm_pilots if refined else PILOTS,
                tolerance,
            )
        else:
            gammas, betas, energy, hint = _start(engine, len(problems), reps, max_iterations)
            rest = np.arange(PILOTS if hint is not None else 0, len(problems))
            gammas[rest], betas[rest], energy[rest], _ = refine(
                engine, rest, gammas[rest], betas[rest], energy[rest], max_iterations, hint
            )
    else:
        # No cost terms (a graph with no edges, zero weights, a constant QUBO): the energy
        # is the constant whatever the angles, every bitstring is optimal, nothing to tune.
        gammas = np.zeros((len(problems), reps))
        betas = np.zeros((len(problems), reps))
        energy = np.zeros(len(problems))
    expected_objectives = engine.expected_objectives(gammas, betas, energy)
    samples = draw(engine, problems, caller, gammas, betas, seed)
    share = engine.simulated_s / max(1, int(engine.evaluations.sum()))  # per evaluation
    answers = []
    for b, problem in enumerate(problems):
        expected = expected_objectives[b]
        solution, objective, feasible = best_sample(problem.formulation, samples[b])
        answers.append(
            QuantumAnswer(
                problem.problem_id,
                solution,
                objective,
                feasible,
                float(expected),
                int(engine.evaluations[b]),
                reps,
                problem.shots,
                tuple(map(float, gammas[b])),
                tuple(map(float, betas[b])),
                engine.name,
                share * int(engine.evaluations[b]),
            )
        )
    return answers


def _start(
    engine: Evaluator, count: int, reps: int, max_iterations: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray | None]:
    """Starting angles: a grid scan for a few pilot problems, transferred to the rest.

    Problems of one shape with normalised weights have nearly the same optimal angles
    (parameter concentration; Brandao et al. 2018, Galda et al. 2021), so the pilots'
    optima are tried as warm starts for everyone else instead of a full grid each.
    A problem whose warm start is poor still converges locally; the pilots' spread
    (several candidates, not one) guards against transferring a bad basin. The pilots'
    mean curvature at their optima is returned too, as the others' Hessian estimate.
    """
    everyone = np.arange(count)
    if count <= PILOTS:
        return (*_grid_start(engine, everyone, reps), None)
    pilots, others = everyone[:PILOTS], everyone[PILOTS:]
    gammas, betas, energy = _grid_start(engine, pilots, reps)
    gammas, betas, energy, curvature = refine(engine, pilots, gammas, betas, energy, max_iterations)
    candidates_g = np.broadcast_to(gammas[None], (len(others), PILOTS, reps))
    candidates_b = np.broadcast_to(betas[None], (len(others), PILOTS, reps))
    values = engine.energies(
        others, np.ascontiguousarray(candidates_g), np.ascontiguousarray(candidates_b)
    )
    best = values.argmin(axis=1)
    all_g = np.empty((count, reps))
    all_b = np.empty((count, reps))
    all_e = np.empty(count)
    all_g[pilots], all_b[pilots], all_e[pilots] = gammas, betas, energy
    all_g[others] = gammas[best]
    all_b[others] = betas[best]
    all_e[others] = values[np.arange(len(others)), best]
    return all_g, all_b, all_e, curvature.mean(axis=0)


def _warm_start(
    engine: Evaluator,
    count: int,
    reps: int,
    max_iterations: int,
    candidates: list[tuple[FloatArray, FloatArray]],
    refined: bool,
    pilot_count: int,
    tolerance: float,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Angles for every problem from the plan's candidates, in a handful of evaluations each.

    ``pilot_count`` pilots (the plan's ``warm_pilots`` when the first candidate is a
    library entry, already an optimum of the class; else ``PILOTS``) try every candidate and refine from the best;
    every other problem tries the pilots' mean optimum (and the library's entry) and keeps
    the best. Each pilot is evaluated at the others' optima: only when that shows transfer
    losing more than ``tolerance`` (the plan's) of the energy (a class whose optima do not
    concentrate, heavy-tailed weights) does everyone take one Newton step, and those whose
    step gained more than ``FAR_OFF`` refine until a step no longer pays. A pilot whose
    best candidate is no sound start (``SOUND_START``) scans the grid instead.
    """
    pilots = np.arange(min(count, pilot_count))
    cand_g = np.array([g for g, _ in candidates])
    cand_b = np.array([b for _, b in candidates])
    values = engine.energies(
        pilots,
        np.ascontiguousarray(np.broadcast_to(cand_g, (len(pilots), *cand_g.shape))),
        np.ascontiguousarray(np.broadcast_to(cand_b, (len(pilots), *cand_b.shape))),
    )
    best = values.argmin(axis=1)
    gammas, betas = cand_g[best].copy(), cand_b[best].copy()
    energy = values[np.arange(len(pilots)), best]
    poor = np.flatnonzero(energy > -SOUND_START * _weight_sums(engine)[pilots])
    if poor.size:
        gammas[poor], betas[poor], energy[poor] = _grid_start(engine, pilots[poor], reps)
    started = energy.copy()
    gammas, betas, energy, curvature = refine(engine, pilots, gammas, betas, energy, max_iterations)
    all_g, all_b, all_e = np.empty((count, reps)), np.empty((count, reps)), np.empty(count)
    all_g[pilots], all_b[pilots], all_e[pilots] = gammas, betas, energy
    if len(pilots) > 1:  # each pilot at the others' optima: what transfer costs in this batch
        cross = engine.energies(
            pilots,
            np.ascontiguousarray(np.broadcast_to(gammas, (len(pilots), *gammas.shape))),
            np.ascontiguousarray(np.broadcast_to(betas, (len(pilots), *betas.shape))),
        )
        np.fill_diagonal(cross, np.inf)
        loss = (cross.min(axis=1) - energy) / np.abs(energy)
    else:  # one pilot, from a library entry: the others step only if the entry looks stale
        stale = (started - energy) / np.abs(energy) > STALE_ENTRY
        loss = np.where(stale, np.inf, 0.0)
    others = np.arange(len(pilots), count)
    if others.size == 0:
        return all_g, all_b, all_e
    # The others try the pilots' consensus (their mean optimum) and the class's entry.
    extra = [candidates[0]] if refined else []
    tries_g = np.array([gammas.mean(axis=0)] + [g for g, _ in extra])
    tries_b = np.array([betas.mean(axis=0)] + [b for _, b in extra])
    values = engine.energies(
        others,
        np.ascontiguousarray(np.broadcast_to(tries_g, (len(others), *tries_g.shape))),
        np.ascontiguousarray(np.broadcast_to(tries_b, (len(others), *tries_b.shape))),
    )
    best = values.argmin(axis=1)
    all_g[others], all_b[others] = tries_g[best], tries_b[best]
    all_e[others] = values[np.arange(len(others)), best]
    if float(np.max(loss, initial=0.0)) > tolerance:
        # Transfer loses more than a step costs: one Newton step each, on a forward-difference
        # gradient and the pilots' curvature (2p + 1 evaluations), kept only where it helps.
        hint = curvature.mean(axis=0)
        before = all_e[others].copy()
        all_g[others], all_b[others], all_e[others] = _one_step(
            engine, others, all_g[others], all_b[others], all_e[others], hint
        )
        # Where that step paid well (the transferred angles were far off), further steps
        # may too: those problems refine until a step no longer pays.
        paid = others[(before - all_e[others]) / np.abs(all_e[others]) > FAR_OFF]
        if paid.size:
            all_g[paid], all_b[paid], all_e[paid], _ = refine(
                engine, paid, all_g[paid], all_b[paid], all_e[paid], max_iterations, hint
            )
    return all_g, all_b, all_e


def _one_step(
    engine: Evaluator,
    problems: npt.NDArray[np.intp],
    gammas: FloatArray,
    betas: FloatArray,
    energy: FloatArray,
    hessian: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """One Newton step per problem from a forward-difference gradient and a shared Hessian."""
    reps = gammas.shape[1]
    theta = np.concatenate([gammas, betas], axis=1)
    dims = theta.shape[1]
    offsets = FD_STEP * np.eye(dims)
    points = theta[:, None, :] + offsets[None, :, :]
    values = engine.energies(problems, points[:, :, :reps], points[:, :, reps:])
    gradient = (values - energy[:, None]) / FD_STEP
    steps = np.array([newton_step(g, hessian, MAX_RADIUS) for g in gradient])
    moved = theta + steps
    new = engine.energies(problems, moved[:, None, :reps].copy(), moved[:, None, reps:].copy())[
        :, 0
    ]
    better = new < energy
    theta = np.where(better[:, None], moved, theta)
    return theta[:, :reps], theta[:, reps:], np.where(better, new, energy)


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
