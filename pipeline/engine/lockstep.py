"""Lockstep QAOA: every problem of a batch is optimised together on one compiled template.

Each optimiser step gathers the angle sets of every problem still improving into one
evaluation call: on a backend, one Estimator call (a V2 PUB with a (problems, sets,
parameters) array and one observable per problem); on a backend that declares an exact
statevector, the same numbers from the diagonal simulator (pipeline.engine.evaluators).
The optimiser:

1. normalises each problem's Ising weights to max |w| = 1, so one angle range suits all;
2. scans a coarse grid of (gamma, beta) ramps for a few pilot problems in one call;
3. refines the pilots with trust-region Newton steps from finite differences of the
   exact expectation, each problem stopping on its own when it has converged;
4. starts every other problem of the batch from the best of the pilots' optima
   (warm start by parameter transfer), then refines all of them the same way.

The answer is the best sampled bitstring under the problem's true objective, feasible
samples first; ``expected_objective`` is the exact expectation of that true objective (in
the problem's own sense and units, no constraint penalty) in the QAOA state at the final
angles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from qiskit.primitives import BitArray

from pipeline.backends.base import Backend
from pipeline.backends.calls import BackendCaller
from pipeline.engine.evaluators import BatchProblem, Evaluator, as_caller, choose_evaluator
from pipeline.engine.templates import CompiledTemplate
from pipeline.formulation import Formulation, bits_to_string

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PILOTS = 3  # problems per batch that scan the grid; the rest start from their optima
GRID_GAMMAS = np.linspace(0.1, 1.5, 8)
GRID_BETAS = np.linspace(-np.pi / 2, np.pi / 2, 8, endpoint=False) + np.pi / 16
FD_STEP = 1e-3
INITIAL_RADIUS = 0.1
MAX_RADIUS = 0.5
MIN_RADIUS = 1e-4
DECREASE_TOLERANCE = 1e-7  # in units of the normalised energy (max |weight| = 1)


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


def optimise_batch(
    template: CompiledTemplate,
    problems: list[BatchProblem],
    backend: Backend | BackendCaller,
    max_iterations: int,
    seed: int,
    evaluator: str = "auto",
) -> list[QuantumAnswer]:
    """Optimise every problem's angles in lockstep, then sample each on the backend.

    Every backend call goes through ``backend`` as a :class:`BackendCaller` (a bare
    backend is called under the default policy).
    """
    if not problems:
        return []
    reps = template.shape.reps
    caller = as_caller(backend)
    engine = choose_evaluator(evaluator, template, problems, caller, seed)
    if template.shape.pairs or template.shape.linear:
        gammas, betas, energy, hint = _start(engine, len(problems), reps, max_iterations)
        rest = np.arange(PILOTS if hint is not None else 0, len(problems))
        gammas[rest], betas[rest], energy[rest], _ = _refine(
            engine, rest, gammas[rest], betas[rest], energy[rest], max_iterations, hint
        )
    else:
        # No cost terms (a graph with no edges, zero weights, a constant QUBO): the energy
        # is the constant whatever the angles, every bitstring is optimal, nothing to tune.
        gammas = np.zeros((len(problems), reps))
        betas = np.zeros((len(problems), reps))
        energy = np.zeros(len(problems))
    expected_objectives = engine.expected_objectives(gammas, betas, energy)
    engine.release()  # the simulator's data go before the backend samples
    samples = _sample(engine, problems, caller, gammas, betas, seed)
    share = engine.simulated_s / max(1, int(engine.evaluations.sum()))  # per evaluation
    answers = []
    for b, problem in enumerate(problems):
        expected = expected_objectives[b]
        solution, objective, feasible = _best_sample(problem.formulation, samples[b])
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
    gammas, betas, energy, curvature = _refine(
        engine, pilots, gammas, betas, energy, max_iterations
    )
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


def _stencil(dims: int) -> FloatArray:
    """Offsets for a centre, central first differences and mixed second differences."""
    unit = np.eye(dims)
    rows = [np.zeros(dims)]
    rows += [FD_STEP * unit[i] for i in range(dims)] + [-FD_STEP * unit[i] for i in range(dims)]
    for i in range(dims):
        for j in range(i + 1, dims):
            for si in (1, -1):
                for sj in (1, -1):
                    rows.append(FD_STEP * (si * unit[i] + sj * unit[j]))
    return np.array(rows)


def _derivatives(
    values: FloatArray, dims: int, hint: FloatArray | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Energy, gradient and Hessian per problem from energies on the stencil.

    With a ``hint`` only the axis points were evaluated: the diagonal curvature is
    measured and the mixed terms come from the hint.
    """
    centre = values[:, 0]
    plus, minus = values[:, 1 : dims + 1], values[:, dims + 1 : 2 * dims + 1]
    gradient = (plus - minus) / (2 * FD_STEP)
    hessian = (
        np.zeros((len(values), dims, dims))
        if hint is None
        else np.repeat(hint[None], len(values), 0)
    )
    diagonal = (plus - 2 * centre[:, None] + minus) / FD_STEP**2
    hessian[:, np.arange(dims), np.arange(dims)] = diagonal
    if hint is not None:
        return centre, gradient, hessian
    column = 2 * dims + 1
    for i in range(dims):
        for j in range(i + 1, dims):
            pp, pm, mp, mm = (values[:, column + k] for k in range(4))
            hessian[:, i, j] = hessian[:, j, i] = (pp - pm - mp + mm) / (4 * FD_STEP**2)
            column += 4
    return centre, gradient, hessian


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


def _refine(
    engine: Evaluator,
    problems: npt.NDArray[np.intp],
    gammas: FloatArray,
    betas: FloatArray,
    energy: FloatArray,
    max_iterations: int,
    hint: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Trust-region Newton steps from finite differences; every running problem in one call.

    With 2p <= 4 angles a full stencil costs 9 (p=1) or 33 (p=2) evaluations, and
    converges in a handful of steps from the grid start, far fewer than first-order
    methods need. A step is kept only if it lowers the energy; each problem stops on
    its own when its Newton model predicts no worthwhile decrease or its trust radius
    collapses.
    """
    batch, reps = gammas.shape  # row r of the arrays is problem problems[r]
    theta = np.concatenate([gammas, betas], axis=1)
    dims = theta.shape[1]
    stencil = _stencil(dims) if hint is None else _stencil(dims)[: 2 * dims + 1]
    curvature = np.zeros((batch, dims, dims))
    best_energy = energy.copy()
    best_theta = theta.copy()
    radius = np.full(batch, INITIAL_RADIUS)
    running = np.ones(batch, dtype=bool)
    for _ in range(max_iterations):
        rows = np.flatnonzero(running)
        if rows.size == 0:
            break
        points = theta[rows, None, :] + stencil[None, :, :]
        values = engine.energies(problems[rows], points[:, :, :reps], points[:, :, reps:])
        centre, gradient, hessian = _derivatives(values, dims, hint)
        accepted = centre <= best_energy[rows]
        # Rejected: return to the best point and shrink; accepted: remember it and grow.
        best_energy[rows] = np.where(accepted, centre, best_energy[rows])
        best_theta[rows] = np.where(accepted[:, None], theta[rows], best_theta[rows])
        radius[rows] = np.where(
            accepted, np.minimum(radius[rows] * 2, MAX_RADIUS), radius[rows] / 4
        )
        theta[rows] = best_theta[rows]
        for position, b in enumerate(rows):
            if not accepted[position]:
                continue
            g, H = gradient[position], hessian[position]
            curvature[b] = H
            step = _newton_step(g, H, radius[b])
            predicted = -(g @ step + 0.5 * step @ H @ step)
            if predicted < DECREASE_TOLERANCE:
                running[b] = False  # converged: the model promises no worthwhile gain
            theta[b] = best_theta[b] + step
        running[rows] &= radius[rows] > MIN_RADIUS
    return best_theta[:, :reps], best_theta[:, reps:], best_energy, curvature


def _newton_step(gradient: FloatArray, hessian: FloatArray, radius: float) -> FloatArray:
    """Regularised Newton step, clipped to the trust radius (a descent step even if H is indefinite)."""
    eigenvalues = np.linalg.eigvalsh(hessian)
    shift = max(0.0, -float(eigenvalues.min()) + 1e-3)
    step = np.asarray(
        -np.linalg.solve(hessian + shift * np.eye(len(gradient)), gradient), dtype=np.float64
    )
    length = float(np.linalg.norm(step))
    return step * (radius / length) if length > radius else step


def _sample(
    evaluator: Evaluator,
    problems: list[BatchProblem],
    caller: BackendCaller,
    gammas: FloatArray,
    betas: FloatArray,
    seed: int,
) -> list[IntArray]:
    """Distinct measured outcomes per problem at its final angles; one PUB per shot count.

    An outcome is an integer whose bit k is classical bit k, which ``measure_all`` (added
    before transpilation) ties to variable k whatever the layout.
    """
    template = evaluator.template
    values = template.bind_values(gammas[:, None, :], betas[:, None, :], evaluator.h, evaluator.J)
    values = values[:, 0, :]
    outcomes: list[IntArray] = [np.zeros(0, dtype=np.int64) for _ in problems]
    by_shots: dict[int, list[int]] = {}
    for b, problem in enumerate(problems):
        by_shots.setdefault(problem.shots, []).append(b)
    pubs = [(template.sampling_circuit, values[rows], shots) for shots, rows in by_shots.items()]
    result = caller.sample(pubs, max(by_shots), seed)
    for pub_result, rows in zip(result, by_shots.values(), strict=True):
        shots = _outcomes_as_integers(pub_result.data.meas)
        for position, b in enumerate(rows):
            outcomes[b] = np.unique(shots[position])
    return outcomes


def _outcomes_as_integers(measured: BitArray) -> IntArray:
    """Every shot as an integer, (parameter sets, shots): BitArray's counts, vectorised.

    Its bytes are big-endian (the last holds bits 0-7); only ``num_bits`` bits count.
    """
    packed = measured.array.astype(np.int64)
    place = np.left_shift(1, 8 * np.arange(packed.shape[-1] - 1, -1, -1), dtype=np.int64)
    return np.asarray((packed @ place) & ((1 << measured.num_bits) - 1), dtype=np.int64)


def _best_sample(formulation: Formulation, outcomes: IntArray) -> tuple[str, float, bool]:
    """Best measured bitstring under the true objective, feasible ones first."""
    bits = ((outcomes[:, None] >> np.arange(formulation.qubo.n)) & 1).astype(np.int8)
    objectives = formulation.objective(bits)
    feasible = formulation.feasible(bits)
    maximise = formulation.qubo.sense == "max"
    score = np.where(feasible, objectives if maximise else -objectives, -np.inf)
    if not feasible.any():
        penalised = formulation.qubo.evaluate(bits)
        score = penalised if maximise else -penalised
    best = int(np.argmax(score))
    return bits_to_string(bits[best]), float(objectives[best]), bool(feasible[best])
