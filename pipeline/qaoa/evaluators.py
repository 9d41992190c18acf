"""Exact expectations of normalised Ising energies, many angle sets per problem per call.

Two evaluators compute the same numbers: the backend's own Estimator on the compiled
template (one metered call per optimiser step, through a :class:`BackendCaller`), and
the engine's exact diagonal simulator (pipeline.qaoa.fast_sim), which may stand in
only where the backend declares ``exact_statevector``: then it reproduces the backend
to 1e-9 at a fraction of the cost. A fake provider or a noisy simulator never declares
it, so what the optimiser sees there is what that backend does. One number only the fast
path knows exactly: a constrained problem's expectation over its feasible outcomes, which
the primitive's shots estimate instead (pipeline.qaoa.sampling).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from qiskit.quantum_info import SparsePauliOp

from pipeline.backends.base import Backend
from pipeline.backends.calls import BackendCaller
from pipeline.formulation import Formulation, Ising
from pipeline.qaoa.fast_sim import MAX_QUBITS, DiagonalQAOA
from pipeline.qaoa.templates import CompiledTemplate

FloatArray = npt.NDArray[np.float64]


class EvaluatorChoice(StrEnum):
    """Which evaluator computes the expectations. Runs always take ``AUTO``; the benchmarks
    and tests name the other two to hold the fast path equal to the backend's Estimator."""

    AUTO = "auto"  # the exact simulator where the backend allows it, else the Estimator
    FAST = "fast"  # the exact diagonal simulator; an error where it cannot stand in
    ESTIMATOR = "estimator"  # the backend's own Estimator primitive
    SAMPLER = "sampler"  # a device's shots (pipeline.qaoa.device): no optimiser loop


@dataclass(frozen=True)
class BatchProblem:
    problem_id: str
    formulation: Formulation
    shots: int


def as_caller(backend: Backend | BackendCaller) -> BackendCaller:
    """A caller for ``backend``; a bare backend is called under the default policy."""
    return backend if isinstance(backend, BackendCaller) else BackendCaller(backend)


def uses_fast_path(backend: Backend, n_qubits: int) -> bool:
    """Whether ``auto`` evaluates on the exact simulator: the backend's claim, and a size limit."""
    return backend.capabilities.exact_statevector and n_qubits <= MAX_QUBITS


def normalised_weights(
    template: CompiledTemplate, problems: list[BatchProblem]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Each problem's Ising weights divided by their root mean square: (scale, h, J).

    RMS, not max |w|: optimal angles of weighted problems then match those of their
    unweighted class (Sureshbabu et al., Quantum 8, 1231, 2024), so the angle library's
    entries and the published fixed angles apply across weight distributions. The RMS
    runs over the nonzero weights (linear and pair), so a graph's unweighted form has all
    weights 1.

    ``J`` has a column per template pair: a problem of a pool fills those of its own pairs,
    the rest weigh 0. A problem that does not fit the template is refused, never misread.
    """
    shape = template.shape
    scale = np.ones(len(problems))
    h = np.zeros((len(problems), len(shape.linear)))
    J = np.zeros((len(problems), len(shape.pairs)))
    column = {pair: index for index, pair in enumerate(shape.pairs)}
    for b, problem in enumerate(problems):
        ising = problem.formulation.ising
        fits = ising.n == shape.n_qubits and all(pair in column for pair in ising.pairs)
        if not fits or (ising.linear_support and not shape.linear):
            raise ValueError(f"problem {problem.problem_id} does not fit shape {shape.label}")
        linear = ising.h[list(shape.linear)] if shape.linear else np.zeros(0)
        scale[b] = weight_scale(linear, ising.J)
        h[b] = linear / scale[b]
        J[b, [column[pair] for pair in ising.pairs]] = ising.J / scale[b]
    return scale, h, J


def weight_scale(h: FloatArray, J: FloatArray) -> float:
    """What a problem's weights are divided by: the RMS of its nonzero linear and pair
    weights (1 where it has none)."""
    weights = np.concatenate([h, J])
    weights = weights[weights != 0.0]
    return _rms(weights) if weights.size else 1.0


def _rms(weights: FloatArray) -> float:
    """The root mean square, computed on weights divided by the largest: squaring weights
    above ~1e154 as they are overflows to inf (and every expectation becomes NaN)."""
    peak = float(np.abs(weights).max())
    return peak * float(np.sqrt(np.mean((weights / peak) ** 2)))


class Evaluator(ABC):
    """Exact expectations of the normalised energies, many angle sets per problem per call."""

    name: EvaluatorChoice

    def __init__(self, template: CompiledTemplate, problems: list[BatchProblem]) -> None:
        self.template = template
        self.problems = problems
        self.scale, self.h, self.J = normalised_weights(template, problems)
        self.evaluations = np.zeros(len(problems), dtype=np.int64)
        self.simulated_s = 0.0  # time spent simulating here rather than in backend calls

    def energies(
        self, rows: npt.NDArray[np.intp], gammas: FloatArray, betas: FloatArray
    ) -> FloatArray:
        """Normalised energies for problems ``rows`` at angle sets (len(rows), S, reps)."""
        self.evaluations[rows] += gammas.shape[1]
        return self._energies(rows, gammas, betas)

    def untuned_energies(self, rows: npt.NDArray[np.intp], angles: FloatArray) -> FloatArray:
        """Energies at angles a problem takes without tuning (``angles``: (len(rows), 2 reps)),
        not counted as evaluations: what sampling at them shows anyway. NaN where this
        evaluator would have to pay a call for it (the expectation then comes from the shots)."""
        return np.full(len(rows), np.nan)

    @abstractmethod
    def _energies(
        self, rows: npt.NDArray[np.intp], gammas: FloatArray, betas: FloatArray
    ) -> FloatArray: ...

    def expected_objectives(
        self, gammas: FloatArray, betas: FloatArray, energies: FloatArray
    ) -> FloatArray:
        """<objective> in each problem's QAOA state at its angles (B, reps), in the problem's
        own sense and units: the true objective, never a constraint penalty.

        ``energies`` are the normalised energies the optimiser measured there. Where the
        sampled QUBO is the objective itself (MaxCut, QUBO), they give it. A constrained
        problem (portfolio: sum x = k) has its expectation over the feasible outcomes only,
        the distribution renormalised over them (an infeasible outcome is no answer, and its
        unconstrained objective may lie above the optimum): NaN here where this evaluator
        cannot know it, for :func:`pipeline.qaoa.sampling.expectations` to take from the
        shots, or where no feasible outcome has any probability.
        """
        out = np.empty(len(self.problems))
        apart: list[int] = []
        for b, problem in enumerate(self.problems):
            formulation = problem.formulation
            if formulation.qubo is formulation.objective_qubo:
                ising = formulation.ising
                out[b] = ising.sign * (ising.constant + self.scale[b] * energies[b])
            else:
                apart.append(b)
        if apart:
            rows = np.asarray(apart, dtype=np.intp)
            values = self._feasible(rows, gammas[rows], betas[rows])
            for position, b in enumerate(apart):
                ising = objective_ising(self.problems[b].formulation)
                out[b] = ising.sign * (ising.constant + values[position])
        return out

    @abstractmethod
    def _feasible(
        self, rows: npt.NDArray[np.intp], gammas: FloatArray, betas: FloatArray
    ) -> FloatArray:
        """<h.z + sum J z z> of the objective (no constant) of constrained problem ``rows[r]``
        at its angles, over its feasible outcomes; NaN where it is not known here."""

    def release(self) -> None:  # noqa: B027 - most evaluators hold nothing to free
        """Free what the evaluation held; the answers' sampling needs none of it."""


def objective_ising(formulation: Formulation) -> Ising:
    """The Ising form of the problem's own objective (no penalty), unnormalised."""
    return formulation.objective_qubo.to_ising()


class PrimitiveEvaluator(Evaluator):
    """The backend's EstimatorV2 on the compiled template: one metered call per step."""

    name = EvaluatorChoice.ESTIMATOR

    def __init__(
        self,
        template: CompiledTemplate,
        problems: list[BatchProblem],
        backend: Backend | BackendCaller,
        seed: int,
    ):
        super().__init__(template, problems)
        self.caller = as_caller(backend)
        self.seed = seed
        shape = template.shape
        layout = template.expectation_circuit.layout
        self.observables: list[SparsePauliOp] = []
        for b in range(len(problems)):
            pairs = zip(shape.pairs, self.J[b], strict=True)
            terms = [("ZZ", [i, j], w) for (i, j), w in pairs if w]  # a pool's absent pairs: 0
            terms += [("Z", [q], w) for q, w in zip(shape.linear, self.h[b], strict=True)]
            operator = SparsePauliOp.from_sparse_list(terms or [("", [], 0.0)], shape.n_qubits)
            self.observables.append(
                operator.apply_layout(layout) if layout is not None else operator
            )

    def _energies(
        self, rows: npt.NDArray[np.intp], gammas: FloatArray, betas: FloatArray
    ) -> FloatArray:
        if not (self.template.shape.pairs or self.template.shape.linear):
            return np.zeros(gammas.shape[:2])  # no cost terms: the energy is 0, no call
        values = self.template.bind_values(gammas, betas, self.h[rows], self.J[rows])
        observables = [[self.observables[r]] for r in rows]
        result = self.caller.estimate(
            [(self.template.expectation_circuit, observables, values)], self.seed
        )
        return np.asarray(result[0].data.evs, dtype=np.float64).reshape(len(rows), gammas.shape[1])

    def _feasible(
        self, rows: npt.NDArray[np.intp], gammas: FloatArray, betas: FloatArray
    ) -> FloatArray:
        """Not known here: an Estimator measures the whole distribution, and the feasible
        part's projector (all 2^n Z-strings) is no observable to send. The shots at the final
        angles estimate it instead, with no call of its own."""
        return np.full(len(rows), np.nan)


class DiagonalEvaluator(Evaluator):
    """The same expectations from the fast diagonal simulator (see pipeline.qaoa.fast_sim)."""

    name = EvaluatorChoice.FAST

    def __init__(self, template: CompiledTemplate, problems: list[BatchProblem]):
        super().__init__(template, problems)
        shape = template.shape
        h = np.zeros((len(problems), shape.n_qubits))
        h[:, list(shape.linear)] = self.h
        # A pool's template has every pair; the simulator takes only those some problem
        # here weighs (a pair of weight 0 adds exactly nothing to an energy).
        used = np.flatnonzero(self.J.any(axis=0))
        pairs = [shape.pairs[k] for k in used]
        self.simulator = DiagonalQAOA(shape.n_qubits, h, pairs, self.J[:, used])

    def untuned_energies(self, rows: npt.NDArray[np.intp], angles: FloatArray) -> FloatArray:
        """Exact, from the simulator that samples the state anyway."""
        reps = angles.shape[1] // 2
        return self._energies(rows, angles[:, None, :reps].copy(), angles[:, None, reps:].copy())[
            :, 0
        ]

    def _energies(
        self, rows: npt.NDArray[np.intp], gammas: FloatArray, betas: FloatArray
    ) -> FloatArray:
        started = time.perf_counter()
        sets = gammas.shape[1]
        owner = np.repeat(np.asarray(rows, dtype=np.int64), sets)
        reps = gammas.shape[2]
        values = self.simulator.expectations(
            owner, gammas.reshape(-1, reps), betas.reshape(-1, reps)
        )
        self.simulated_s += time.perf_counter() - started
        return values.reshape(len(rows), sets)

    def _feasible(
        self, rows: npt.NDArray[np.intp], gammas: FloatArray, betas: FloatArray
    ) -> FloatArray:
        """Exact, from each problem's final state: one more evaluation each."""
        started = time.perf_counter()
        self.evaluations[rows] += 1
        values = np.empty(len(rows))
        for r, b in enumerate(rows):
            formulation = self.problems[b].formulation
            ising = objective_ising(formulation)
            values[r] = self.simulator.observe(
                int(b), gammas[r], betas[r], ising.h, ising.pairs, ising.J, formulation.cardinality
            )
        self.simulated_s += time.perf_counter() - started
        return values

    def release(self) -> None:
        self.simulator.release()


def choose_evaluator(
    mode: EvaluatorChoice,
    template: CompiledTemplate,
    problems: list[BatchProblem],
    caller: BackendCaller,
    seed: int,
) -> Evaluator:
    """``fast`` only where the backend declares it reproduces an ideal statevector exactly."""
    mode = EvaluatorChoice(mode)  # a ValueError naming the three for any other
    exact = uses_fast_path(caller.backend, template.shape.n_qubits)
    if mode is EvaluatorChoice.FAST and not exact:
        raise ValueError(f"the fast evaluator cannot stand in for backend {caller.name!r}")
    if mode is EvaluatorChoice.ESTIMATOR or not exact:
        return PrimitiveEvaluator(template, problems, caller, seed)
    return DiagonalEvaluator(template, problems)
