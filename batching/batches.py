"""The records planning, routing and dispatch pass along: a planned problem, a planned batch,
a routed batch with its route's numbers, and a finished batch with its tasks' results."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from pipeline.fallback import Fallback
from pipeline.formulation import Formulation
from pipeline.model import ProblemSpec
from pipeline.qaoa.angles import AnglePlan, degree_sequence
from pipeline.qaoa.shapes import ShapeKey, shape_of
from pipeline.tasks import Answer, ChunkResult
from pipeline.vocabulary import Route


@dataclass(frozen=True, eq=False)
class PlannedProblem:
    """A claimed problem, formulated once: what every later stage reads."""

    problem_id: str
    key: str
    spec: ProblemSpec
    formulation: Formulation
    input_hash: str
    attempts: int
    submitted_at: datetime
    claimed_at: datetime
    reps: int
    shots: int
    trace_id: str | None = None  # the submitter's W3C trace id, carried into its row
    supersedes: str | None = None  # requeued: the batch of the row its answer replaces
    known_instance: str | None = None  # the public instance it is, with its published optimum

    @property
    def classical_shape_key(self) -> str:
        """The key a classical row is filed under: the problem's own shape, no circuit."""
        return shape_of(self.formulation.ising, 0, "cpsat").label


@dataclass(frozen=True)
class RoutingNumbers:
    """The numbers behind one batch's route; each becomes a column of ``batches/``."""

    decision: Route
    reason: str
    est_backend: str
    est_quantum_feasible: bool
    est_quantum_cost_usd: float | None
    est_quantum_queue_s: float | None
    est_quantum_compile_s: float | None
    est_quantum_execute_s: float | None
    est_quantum_latency_s: float | None
    est_quantum_memory_bytes: int | None
    est_classical_cost_usd: float
    est_classical_latency_s: float
    deadline: datetime | None
    deadline_slack_s: float | None
    budget_problem_usd: float
    budget_run_left_usd: float
    budget_tenant_left_usd: float | None
    budget_allotted_usd: float


@dataclass(frozen=True, eq=False)
class PlannedBatch:
    """Problems grouped to run together, before routing: one shape or pool where the
    quantum route is open to them, one kind where a problem rule refused it (no shape)."""

    batch_id: str
    shape: ShapeKey | None  # the shared template's shape; None: quantum refused per problem
    problems: tuple[PlannedProblem, ...]
    route_reason: str
    fallbacks: dict[str, Fallback] = field(default_factory=dict)  # problem_id -> why

    @property
    def size(self) -> int:
        return len(self.problems)

    @cached_property
    def angle_shape(self) -> ShapeKey | None:
        return angle_shape(self.shape, self.problems)


@dataclass(frozen=True, eq=False)
class Batch:
    """A routed batch: its route, decided once at routing, and how it is cut for workers.

    A quantum batch has its shape and ``chunks`` lockstep chunks; a classical one no shape.
    ``classical_s`` is what CP-SAT is expected to take on all of its problems (a quantum
    batch keeps that much time in reserve for its fallback).
    """

    batch_id: str
    route: Route
    shape: ShapeKey | None
    problems: tuple[PlannedProblem, ...]
    route_reason: str
    fallbacks: dict[str, Fallback] = field(default_factory=dict)  # problem_id -> why
    routing: RoutingNumbers | None = None  # the numbers behind the route
    chunks: int = 1
    classical_s: float = 0.0

    @property
    def size(self) -> int:
        return len(self.problems)

    @cached_property
    def angle_shape(self) -> ShapeKey | None:
        return angle_shape(self.shape, self.problems)


@dataclass(frozen=True)
class TemplateUse:
    """The template a quantum batch ran on, and whether this run compiled it."""

    artifact_key: str
    first: bool  # the run's first batch of this shape: the one that waited for it
    compiled: bool  # compiled by this run (else loaded from the store)
    compile_s: float


@dataclass(frozen=True)
class FinishedBatch:
    """A batch with every task's result: planned route, fallbacks, and what raised."""

    batch: Batch
    template: TemplateUse | None
    chunks: int
    results: tuple[ChunkResult, ...]  # from the planned route's tasks
    fallback_results: tuple[ChunkResult, ...]  # CP-SAT answers for quantum fallbacks
    fallbacks: dict[str, Fallback]  # problem_id -> why its answer is not the planned one
    errors: dict[str, Fallback]  # problem_id -> why it got no answer at all
    execute_s: float
    references: dict[str, Answer] = field(default_factory=dict)  # CP-SAT beside quantum
    angle_plan: AnglePlan | None = None  # where the quantum batch's angles started

    @property
    def quantum(self) -> bool:
        return self.batch.route == Route.QUANTUM


def angle_shape(shape: ShapeKey | None, problems: tuple[PlannedProblem, ...]) -> ShapeKey | None:
    """The shape whose angle class a batch starts from and teaches: its own, or, for a pool
    whose problems share one degree sequence, a member's exact shape (that class's library
    entry and published angles fit them all); a pool of mixed structure is a class of its
    own."""
    if shape is None or not shape.pooled:
        return shape
    exact = [shape_of(p.formulation.ising, shape.reps, shape.target) for p in problems]
    if len({degree_sequence(s.n_qubits, s.pairs) for s in exact}) == 1:
        return exact[0]
    return shape
