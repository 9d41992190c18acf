"""Batch formation: group claimed problems by route and shape, cut groups at the size limit.

Pure functions over plain data, so the invariants (every problem in exactly one batch,
no batch over the limit, one shape per quantum batch) are easy to test.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from batching.routing import RouteDecision, route_problem
from pipeline.engine.shapes import ShapeKey, shape_of
from pipeline.formulation import Formulation
from pipeline.model import ProblemSpec

if TYPE_CHECKING:
    from batching.economics import RoutingNumbers

CLASSICAL_TARGET = "cpsat"


@dataclass(frozen=True, eq=False)
class PlannedProblem:
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


@dataclass(frozen=True, eq=False)
class Batch:
    batch_id: str
    route: str  # quantum | classical
    shape: ShapeKey | None  # the shared template's shape; None for classical batches
    problems: tuple[PlannedProblem, ...]
    route_reason: str
    fallback_reasons: dict[str, str] = field(default_factory=dict)  # problem_id -> reason
    routing: RoutingNumbers | None = None  # the economics behind the route, once decided

    @property
    def size(self) -> int:
        return len(self.problems)


def new_batch_id() -> str:
    return f"b-{secrets.token_hex(8)}"


def plan_batches(
    problems: Sequence[PlannedProblem], backend: str, max_qubits: int, max_batch_size: int
) -> list[Batch]:
    """Route each problem, group quantum ones by shape and classical ones by kind, then cut."""
    groups: dict[tuple[str, ShapeKey | str], list[tuple[PlannedProblem, RouteDecision]]] = (
        defaultdict(list)
    )
    for problem in problems:
        decision = route_problem(
            problem.spec.route, problem.formulation.ising.n, backend, max_qubits
        )
        if decision.route == "quantum":
            shape = shape_of(problem.formulation.ising, problem.reps, backend)
            groups[("quantum", shape)].append((problem, decision))
        else:
            groups[("classical", problem.spec.kind)].append((problem, decision))
    batches: list[Batch] = []
    for (route, group_key), members in sorted(groups.items(), key=lambda item: _sort_key(item[0])):
        for start in range(0, len(members), max_batch_size):
            chunk = members[start : start + max_batch_size]
            template_shape = group_key if isinstance(group_key, ShapeKey) else None
            reasons = sorted({decision.reason for _, decision in chunk})
            batches.append(
                Batch(
                    batch_id=new_batch_id(),
                    route=route,
                    shape=template_shape,
                    problems=tuple(problem for problem, _ in chunk),
                    route_reason="; ".join(reasons[:3])
                    + (f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""),
                    fallback_reasons={p.problem_id: d.reason for p, d in chunk if d.fallback},
                )
            )
    return batches


def _sort_key(key: tuple[str, ShapeKey | str]) -> tuple[str, str]:
    route, group = key
    return route, group.label if isinstance(group, ShapeKey) else group
