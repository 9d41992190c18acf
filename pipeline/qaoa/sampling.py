"""Sampling a batch's answers: shots at each problem's final angles, and the best measured
bitstring under the problem's true objective.

On a backend the engine's exact simulator stands in for (Aer's ideal statevector), the shots
are drawn from the exact final state, each problem with its own seeded generator; anywhere
else (noise, devices, fake providers) they are measured on the backend, one primitive call
per shot count. The lockstep optimiser's last step, and replay's: the same code, so a replay
at stored angles with the stored seed draws the same shots.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from qiskit.primitives import BitArray

from pipeline.backends.calls import BackendCaller
from pipeline.formulation import Formulation, bits_to_string
from pipeline.qaoa.evaluators import BatchProblem, DiagonalEvaluator, Evaluator

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Shots:
    """One problem's shots: its distinct outcomes (bit k of an outcome is variable k) and
    how often each came up."""

    outcomes: IntArray
    counts: IntArray


def draw(
    evaluator: Evaluator,
    problems: list[BatchProblem],
    caller: BackendCaller,
    gammas: FloatArray,
    betas: FloatArray,
    seed: int,
) -> list[Shots]:
    """Each problem's shots at its final angles; releases the evaluator's data."""
    if not isinstance(evaluator, DiagonalEvaluator) or caller.backend.capabilities.own_shots:
        evaluator.release()  # its data go before the backend samples
        return sample(evaluator, problems, caller, gammas, betas, seed)
    caller.check_budget_and_deadline()  # drawing the shots stands for the sampling call
    started = time.perf_counter()
    outcomes = []
    for b, problem in enumerate(problems):
        generator = np.random.default_rng([seed, _stable(problem.problem_id)])
        drawn = evaluator.simulator.draw(b, gammas[b], betas[b], problem.shots, generator)
        outcomes.append(Shots(*drawn))
    evaluator.release()
    evaluator.simulated_s += time.perf_counter() - started
    return outcomes


def _stable(problem_id: str) -> int:
    """A problem's own seed offset, the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(problem_id.encode()).digest()[:8], "little")


def sample(
    evaluator: Evaluator,
    problems: list[BatchProblem],
    caller: BackendCaller,
    gammas: FloatArray,
    betas: FloatArray,
    seed: int,
) -> list[Shots]:
    """Each problem's measured shots at its final angles; one PUB per shot count.

    An outcome is an integer whose bit k is classical bit k, which ``measure_all`` (added
    before transpilation) ties to variable k whatever the layout.
    """
    template = evaluator.template
    values = template.bind_values(gammas[:, None, :], betas[:, None, :], evaluator.h, evaluator.J)
    values = values[:, 0, :]
    none = np.zeros(0, dtype=np.int64)
    outcomes = [Shots(none, none) for _ in problems]
    by_shots: dict[int, list[int]] = {}
    for b, problem in enumerate(problems):
        by_shots.setdefault(problem.shots, []).append(b)
    pubs = [(template.sampling_circuit, values[rows], shots) for shots, rows in by_shots.items()]
    result = caller.sample(pubs, max(by_shots), seed)
    for pub_result, rows in zip(result, by_shots.values(), strict=True):
        shots = outcomes_as_integers(pub_result.data.meas)
        for position, b in enumerate(rows):
            distinct, counts = np.unique(shots[position], return_counts=True)
            outcomes[b] = Shots(distinct, counts.astype(np.int64))
    return outcomes


def outcomes_as_integers(measured: BitArray) -> IntArray:
    """Every shot as an integer, (parameter sets, shots): BitArray's counts, vectorised.

    Its bytes are big-endian (the last holds bits 0-7); only ``num_bits`` bits count.
    """
    packed = measured.array.astype(np.int64)
    place = np.left_shift(1, 8 * np.arange(packed.shape[-1] - 1, -1, -1), dtype=np.int64)
    return np.asarray((packed @ place) & ((1 << measured.num_bits) - 1), dtype=np.int64)


def _bits(formulation: Formulation, outcomes: IntArray) -> npt.NDArray[np.int8]:
    return ((outcomes[:, None] >> np.arange(formulation.qubo.n)) & 1).astype(np.int8)


def best_sample(formulation: Formulation, shots: Shots) -> tuple[str, float, bool]:
    """Best measured bitstring under the true objective, feasible ones first."""
    bits = _bits(formulation, shots.outcomes)
    objectives = formulation.objective(bits)
    feasible = formulation.feasible(bits)
    maximise = formulation.qubo.sense == "max"
    score = np.where(feasible, objectives if maximise else -objectives, -np.inf)
    if not feasible.any():
        penalised = formulation.qubo.evaluate(bits)
        score = penalised if maximise else -penalised
    best = int(np.argmax(score))
    return bits_to_string(bits[best]), float(objectives[best]), bool(feasible[best])


def expectations(
    exact: FloatArray, problems: list[BatchProblem], shots: list[Shots]
) -> list[float | None]:
    """Each problem's expected objective: the evaluator's exact value where it has one, else
    (a constrained problem evaluated on a backend's primitive) the mean objective of its
    feasible shots; None where neither exists (no feasible outcome at all)."""
    found: list[float | None] = []
    for value, problem, drawn in zip(exact, problems, shots, strict=True):
        known = float(value) if not np.isnan(value) else feasible_mean(problem.formulation, drawn)
        found.append(None if np.isnan(known) else known)
    return found


def feasible_mean(formulation: Formulation, shots: Shots) -> float:
    """The mean objective over the feasible shots, each as often as it came up (NaN if none):
    the estimate of the feasible expectation that a device's shots give."""
    bits = _bits(formulation, shots.outcomes)
    feasible = formulation.feasible(bits)
    weight = shots.counts[feasible]
    if not weight.sum():
        return float("nan")
    return float(np.average(formulation.objective(bits[feasible]), weights=weight))
