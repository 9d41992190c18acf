"""What a worker receives and returns: typed, picklable records, never JSON to re-parse.

A run sends each quantum chunk one :class:`QuantumChunkTask` (its template packed once per
run, its problems' formulations) and each classical problem one :class:`ClassicalTask`;
workers answer with a :class:`ChunkResult` holding one :class:`Answer` per problem they
solved. When a backend gives up, the result says why in ``fallback`` (a code and a message)
and carries what the attempts cost, so the run can charge them and send the problems on.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.backends.calls import CallPolicy
from pipeline.fallback import Fallback
from pipeline.formulation import Formulation
from pipeline.qaoa.angles import AnglePlan, ClassAngles, TransferCheck
from pipeline.qaoa.device import DeviceRun
from pipeline.qaoa.templates import PackedTemplate

__all__ = [
    "Answer",
    "ChunkResult",
    "ClassicalTask",
    "DeviceRun",
    "Fallback",
    "QuantumChunkTask",
    "WorkItem",
]


@dataclass(frozen=True)
class WorkItem:
    """One problem as a worker needs it: its formulation and, for sampling, its shots."""

    problem_id: str
    formulation: Formulation
    shots: int


@dataclass(frozen=True)
class QuantumChunkTask:
    """Problems of one shape, optimised in lockstep on one compiled template."""

    template: PackedTemplate
    problems: tuple[WorkItem, ...]
    backend_spec: str
    max_qubits: int
    max_iterations: int
    seed: int
    policy: CallPolicy
    angle_plan: AnglePlan | None = None  # the batch's starting angles, from the angle library
    device: DeviceRun | None = None  # on a device: no optimiser loop (see DeviceRun)


@dataclass(frozen=True)
class ClassicalTask:
    """One problem for the classical solver, within its time limit; enumerated instead when
    it has at most ``enumerate_max_variables`` variables (0: always the solver)."""

    problem_id: str
    formulation: Formulation
    time_limit_s: float
    workers: int
    seed: int
    enumerate_max_variables: int = 0


@dataclass(frozen=True)
class Answer:
    """One problem's answer, in the problem's own sense and units.

    ``seconds`` and ``cost_usd`` are this problem's own (a lockstep chunk's shared time
    and bill are split evenly between its problems); ``angles`` are the final QAOA angles,
    gammas then betas, empty for classical answers.
    """

    problem_id: str
    solution: str
    objective: float
    feasible: bool
    proven_optimal: bool
    seconds: float
    cost_usd: float
    expected_objective: float | None = None
    evaluations: int = 0
    reps: int | None = None
    angles: tuple[float, ...] = ()
    provider_job_id: str | None = None
    solver_status: str | None = None
    bound: float | None = None  # the classical solver's best bound, in the problem's sense
    qubits: tuple[int, ...] = ()  # on a device: the physical qubits the problem ran on


@dataclass(frozen=True)
class ChunkResult:
    """What one task did: its answers, where and how long it ran, and its backend calls.

    ``cost_usd`` is everything the task spent, failed attempts included; when the backend
    could not answer, ``answers`` is empty and ``fallback`` says why.
    """

    problem_ids: tuple[str, ...]
    answers: tuple[Answer, ...]
    worker: str
    seconds: float
    cost_usd: float = 0.0
    attempts: int = 0
    failures: int = 0
    max_attempts_per_call: int = 0
    job_ids: tuple[str, ...] = ()
    jobs: int = 0  # provider jobs submitted, retries included
    executions: int = 0  # circuits run times their shots, over the provider jobs that answered
    qpu_seconds: float = 0.0  # on a device: the QPU time those jobs take (the price model's)
    fallback: Fallback | None = None
    # What its pilots found, for the class's other chunks; or what following them measured.
    learned: ClassAngles | TransferCheck | None = None
