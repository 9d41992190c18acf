"""Lockstep QAOA: every problem of a batch is optimised together on one compiled template.

Each optimiser step gathers the angle sets of every problem still improving into one
evaluation call: on a backend, one Estimator call (a V2 PUB with a (problems, sets,
parameters) array and one observable per problem); on a backend that declares an exact
statevector, the same numbers from the diagonal simulator (pipeline.qaoa.evaluators).
The optimiser:

1. divides each problem's Ising weights by their RMS, so one set of angles suits a class
   of problems whatever their weights (Sureshbabu et al. 2024);
2. starts from the batch's :class:`~pipeline.qaoa.angles.AnglePlan` when it has one
   (the angle library's best entry for the class, the published fixed angles), else
   scans a coarse grid of (gamma, beta) ramps, for a few pilot problems in one call;
3. refines the pilots with trust-region Newton steps from finite differences of the
   exact expectation, each problem stopping on its own when a step no longer pays;
4. starts every other problem of the batch from the pilots' optima (parameter transfer)
   and spends on them only what the pilots show transfer loses (pipeline.qaoa.starts).

The answer is the best sampled bitstring under the problem's true objective, feasible
samples first; ``expected_objective`` is the exact expectation of that true objective (in
the problem's own sense and units, no constraint penalty) in the QAOA state at the final
angles. For a constrained kind (portfolio: sum x = k) it is the expectation over the
feasible outcomes, the distribution renormalised over them, so it never exceeds the
optimum: exact on the fast path, the mean over the feasible shots on a backend's primitive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.backends.base import Backend
from pipeline.backends.calls import BackendCaller
from pipeline.qaoa.angles import (
    DEFAULT_TRANSFER_TOLERANCE,
    DEFAULT_WARM_PILOTS,
    AnglePlan,
    ClassAngles,
    TransferCheck,
    usable,
)
from pipeline.qaoa.evaluators import (
    BatchProblem,
    Evaluator,
    EvaluatorChoice,
    as_caller,
    choose_evaluator,
)
from pipeline.qaoa.sampling import Shots, best_sample, draw, expectations
from pipeline.qaoa.starts import PILOTS, WarmStart, cold_start, warm_start
from pipeline.qaoa.templates import CompiledTemplate
from pipeline.qaoa.transfer import follow

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class QuantumAnswer:
    problem_id: str
    solution: str
    objective: float
    feasible: bool
    expected_objective: float | None  # None: no feasible outcome had any probability
    evaluations: int
    reps: int
    shots: int
    gammas: tuple[float, ...]
    betas: tuple[float, ...]
    evaluator: EvaluatorChoice  # FAST (the exact diagonal simulator) or ESTIMATOR
    simulated_s: float = 0.0  # its share of the fast simulator's time; backend calls bill apart
    qubits: tuple[int, ...] = ()  # on a device: the physical qubits it ran on

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
    evaluator: EvaluatorChoice = EvaluatorChoice.AUTO,
    start: AnglePlan | None = None,
) -> list[QuantumAnswer]:
    """Optimise every problem's angles in lockstep, then sample each on the backend: the
    answers of :func:`optimise_chunk`."""
    return optimise_chunk(template, problems, backend, max_iterations, seed, evaluator, start)[0]


def optimise_chunk(
    template: CompiledTemplate,
    problems: list[BatchProblem],
    backend: Backend | BackendCaller,
    max_iterations: int,
    seed: int,
    evaluator: EvaluatorChoice = EvaluatorChoice.AUTO,
    start: AnglePlan | None = None,
) -> tuple[list[QuantumAnswer], ClassAngles | TransferCheck | None]:
    """Optimise every problem's angles in lockstep, then sample each on the backend; also
    what the chunk's pilots found, or, where it followed ``start.shared``, what following
    measured (None: nothing).

    Every backend call goes through ``backend`` as a :class:`BackendCaller` (a bare
    backend is called under the default policy). ``start``: the batch's starting angles
    and depth from the angle library (``None``: the grid, at the template's depth); an
    unsound candidate in it is ignored, so a corrupt plan costs evaluations, never answers.
    """
    if not problems:
        return [], None
    reps, warm = _starting_point(template, start)
    caller = as_caller(backend)
    engine = choose_evaluator(evaluator, template, problems, caller, seed)
    (gammas, betas, energy), learned = _optimise(
        engine, template, len(problems), (reps, max_iterations), warm, start
    )
    exact = engine.expected_objectives(gammas, betas, energy)
    samples = draw(engine, problems, caller, gammas, betas, seed)
    expected = expectations(exact, problems, samples)
    return _answers(engine, problems, samples, expected, gammas, betas), learned


def _answers(
    engine: Evaluator,
    problems: list[BatchProblem],
    samples: list[Shots],
    expected: list[float | None],
    gammas: FloatArray,
    betas: FloatArray,
) -> list[QuantumAnswer]:
    """Each problem's best sample under its true objective, with what it cost to find."""
    share = engine.simulated_s / max(1, int(engine.evaluations.sum()))  # per evaluation
    answers = []
    for b, problem in enumerate(problems):
        solution, objective, feasible = best_sample(problem.formulation, samples[b])
        answers.append(
            QuantumAnswer(
                problem.problem_id,
                solution,
                objective,
                feasible,
                expected[b],
                int(engine.evaluations[b]),
                gammas.shape[1],
                problem.shots,
                tuple(map(float, gammas[b])),
                tuple(map(float, betas[b])),
                engine.name,
                share * int(engine.evaluations[b]),
            )
        )
    return answers


def _starting_point(
    template: CompiledTemplate, start: AnglePlan | None
) -> tuple[int, WarmStart | None]:
    """The depth to run and, where the plan offers sound angles, where to start from them
    (None: the grid)."""
    reps = template.shape.reps
    if start is not None and 1 <= start.reps <= reps:
        reps = start.reps  # the library showed a deeper circuit does not pay for this class
    offered = () if start is None else start.candidates
    checked = [(c.source, usable(c, reps)) for c in offered]
    sound = [angles for _, angles in checked if angles is not None]
    if not sound:
        return reps, None
    # The first sound candidate is a library entry: an optimum of the class already.
    refined = next((source for source, a in checked if a is not None), "") == "library"
    tolerance = DEFAULT_TRANSFER_TOLERANCE if start is None else start.transfer_tolerance
    warm_pilots = DEFAULT_WARM_PILOTS if start is None else start.warm_pilots
    return reps, WarmStart(sound, refined, warm_pilots if refined else PILOTS, tolerance)


def _optimise(
    engine: Evaluator,
    template: CompiledTemplate,
    count: int,
    limits: tuple[int, int],
    warm: WarmStart | None,
    start: AnglePlan | None,
) -> tuple[tuple[FloatArray, FloatArray, FloatArray], ClassAngles | TransferCheck | None]:
    """Every problem's final angles and energy: following the class's pilots where they ran
    (``start.shared`` at this depth), else from the plan's angles or the grid with pilots of
    its own; and what the pilots found or following measured. ``limits``: the depth and
    the iterations."""
    reps, max_iterations = limits
    if not (template.shape.pairs or template.shape.linear):
        # No cost terms (a graph with no edges, zero weights, a constant QUBO): the energy
        # is the constant whatever the angles, every bitstring is optimal, nothing to tune.
        return (np.zeros((count, reps)), np.zeros((count, reps)), np.zeros(count)), None
    if start is not None and start.shared is not None and start.shared.reps == reps:
        return follow(engine, count, max_iterations, start)
    if warm is not None:
        return warm_start(engine, count, reps, max_iterations, warm)
    return cold_start(engine, count, reps, max_iterations)
