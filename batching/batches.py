"""The records planning and routing pass along: a planned problem, a batch, a route's numbers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from pipeline.fallback import Fallback
from pipeline.formulation import Formulation
from pipeline.model import ProblemSpec
from pipeline.qaoa.angles import degree_sequence
from pipeline.qaoa.shapes import ShapeKey, shape_of


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


@dataclass(frozen=True)
class RoutingNumbers:
    """The numbers behind one batch's route; each becomes a column of ``batches/``."""

    decision: str  # quantum | classical
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

    def columns(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("decision", "reason")
        }


@dataclass(frozen=True, eq=False)
class Batch:
    """Problems that run together: one shape or pool (quantum) or one kind (classical)."""

    batch_id: str
    route: str  # quantum | classical
    shape: ShapeKey | None  # the shared template's shape; None for classical batches
    problems: tuple[PlannedProblem, ...]
    route_reason: str
    fallbacks: dict[str, Fallback] = field(default_factory=dict)  # problem_id -> why
    routing: RoutingNumbers | None = None  # the economics behind the route, once decided

    @property
    def size(self) -> int:
        return len(self.problems)

    @cached_property
    def angle_shape(self) -> ShapeKey | None:
        """The shape whose angle class the batch starts from and teaches: its own, or, for
        a pool whose problems share one degree sequence, a member's exact shape (that class's
        library entry and published angles fit them all); a pool of mixed structure is a
        class of its own."""
        shape = self.shape
        if shape is None or not shape.pooled:
            return shape
        exact = [shape_of(p.formulation.ising, shape.reps, shape.target) for p in self.problems]
        if len({degree_sequence(s.n_qubits, s.pairs) for s in exact}) == 1:
            return exact[0]
        return shape
