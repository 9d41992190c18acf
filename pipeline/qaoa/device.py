"""A batch on a device: its class's angles, a few billed evaluations at most, one sampling.

On a QPU every optimiser step is a job billed by the second, and a lockstep optimisation
makes tens of them. Here a problem starts from its class's angles (the angle library's
entry, else the published fixed angles, else a linear ramp) and, with ``evaluations`` n >
0, samples n angle sets about them (gamma scaled by 0.75 to 1.25) in the same job,
answering from the set whose feasible shots score best; with n = 0 (the default) it is
sampled once at the class's angles. Either way the batch makes one sampler call, cut into
as few provider jobs as the backend's limits allow, its problems side by side on the chip
where packing is on (:mod:`pipeline.qaoa.packing`).

The expectation a row stores is the mean objective over the answer's feasible shots: on a
device that is all there is to know.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.backends.base import Backend
from pipeline.backends.calls import BackendCaller
from pipeline.backends.devices import DeviceTarget
from pipeline.config import QuantumSettings
from pipeline.qaoa.angles import AnglePlan, usable
from pipeline.qaoa.evaluators import BatchProblem, EvaluatorChoice, normalised_weights
from pipeline.qaoa.lockstep import QuantumAnswer
from pipeline.qaoa.packing import OnePerCircuit, Pairs, Placement, SideBySide, fitting_regions
from pipeline.qaoa.sampling import Shots, best_sample, feasible_mean
from pipeline.qaoa.shapes import ShapeKey
from pipeline.qaoa.templates import CompiledTemplate

FloatArray = npt.NDArray[np.float64]
RAMP_STEP = 0.6  # the linear ramp's total time, as in TQA (Sack and Serbyn, Quantum 5, 491)
SCAN_SPREAD = 0.25  # n angle sets scale gamma from 1 - this to 1 + this


@dataclass(frozen=True)
class DeviceRun:
    """How a chunk runs on a device, where every optimiser step is a billed job: its problems
    take the plan's angles, ``evaluations`` angle sets about them are sampled where it is
    above 0, and ``packing`` puts problems side by side on one circuit."""

    packing: bool
    evaluations: int = 0
    fidelity: float = 0.0  # quantum.packing_fidelity: see pipeline.qaoa.packing.fitting_regions


def on_device(backend: Backend) -> bool:
    """Whether ``backend`` runs on a device's qubits (a QPU, or a local stand-in for one)."""
    return backend.target.is_device


def device_run(backend: Backend, quantum: QuantumSettings) -> DeviceRun | None:
    """How the run's quantum chunks run on ``backend``: None off a device (the optimiser loop)."""
    if not on_device(backend):
        return None
    return DeviceRun(quantum.packing, quantum.device_evaluations, quantum.packing_fidelity)


def problems_per_circuit(backend: Backend, shape: ShapeKey, pairs: Pairs, fidelity: float) -> int:
    """How many problems like one with ``pairs`` one packed circuit holds on ``backend``."""
    assert isinstance(backend.target, DeviceTarget)
    return max(1, len(fitting_regions(backend.target.transpiler_target, shape, pairs, fidelity)))


def run_on_device(
    template: CompiledTemplate,
    problems: list[BatchProblem],
    caller: BackendCaller,
    plan: AnglePlan | None,
    run: DeviceRun,
    seed: int,
) -> list[QuantumAnswer]:
    """Every problem's answer from one sampler call (see the module's docstring)."""
    if not problems:
        return []
    reps = template.shape.reps if plan is None else min(plan.reps, template.shape.reps)
    evaluations = run.evaluations
    sets = angle_sets(start_angles(plan, reps), evaluations)  # (S, 2 reps)
    _, h, J = normalised_weights(template, problems)
    placement = _placement(template, caller, (h, J), [p.shots for p in problems], run)
    gammas = np.broadcast_to(sets[:, :reps], (len(problems), *sets[:, :reps].shape)).copy()
    betas = np.broadcast_to(sets[:, reps:], (len(problems), *sets[:, reps:].shape)).copy()
    result = caller.sample(placement.pubs(gammas, betas), max(p.shots for p in problems), seed)
    outcomes = placement.outcomes(result)
    return [
        _answer(problem, outcomes[b], sets, evaluations, placement.qubits[b])
        for b, problem in enumerate(problems)
    ]


def start_angles(plan: AnglePlan | None, reps: int) -> FloatArray:
    """Gammas then betas: the plan's first sound candidate, else a linear ramp."""
    for candidate in () if plan is None else plan.candidates:
        sound = usable(candidate, reps)
        if sound is not None:
            return np.concatenate(sound)
    fraction = (np.arange(reps) + 0.5) / reps
    return np.concatenate([RAMP_STEP * fraction, -RAMP_STEP * (1 - fraction)])


def angle_sets(start: FloatArray, evaluations: int) -> FloatArray:
    """``max(1, evaluations)`` angle sets: the start, or gamma scaled about it."""
    if evaluations <= 1:
        return start[None, :].copy()
    reps = len(start) // 2
    scales = 1 + SCAN_SPREAD * np.linspace(-1, 1, evaluations)
    sets = np.repeat(start[None, :], evaluations, axis=0)
    sets[:, :reps] *= scales[:, None]
    return sets


def _placement(
    template: CompiledTemplate,
    caller: BackendCaller,
    weights: tuple[FloatArray, FloatArray],
    shots: list[int],
    run: DeviceRun,
) -> Placement:
    h, J = weights
    target = caller.backend.target
    if run.packing and isinstance(target, DeviceTarget):
        return SideBySide(target.transpiler_target, template.shape, h, J, shots, run.fidelity)
    return OnePerCircuit(template, h, J, shots)


def _answer(
    problem: BatchProblem,
    outcomes: npt.NDArray[np.int64],
    sets: FloatArray,
    evaluations: int,
    qubits: tuple[int, ...],
) -> QuantumAnswer:
    """The problem's answer from the angle set whose feasible shots scored best."""
    formulation = problem.formulation
    drawn = [Shots(*_counted(row)) for row in outcomes]
    means = np.array([feasible_mean(formulation, shots) for shots in drawn])
    sense = 1.0 if formulation.qubo.sense == "max" else -1.0
    chosen = int(np.argmax(np.where(np.isnan(means), -np.inf, sense * means)))
    solution, objective, feasible = best_sample(formulation, drawn[chosen])
    reps = sets.shape[1] // 2
    expected = None if np.isnan(means[chosen]) else float(means[chosen])
    return QuantumAnswer(
        problem.problem_id,
        solution,
        objective,
        feasible,
        expected,
        evaluations,
        reps,
        problem.shots,
        tuple(map(float, sets[chosen, :reps])),
        tuple(map(float, sets[chosen, reps:])),
        EvaluatorChoice.SAMPLER,
        qubits=qubits,
    )


def _counted(shots: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    distinct, counts = np.unique(shots, return_counts=True)
    return distinct, counts.astype(np.int64)
