"""Batch formation: group planned problems by route and shape, cut groups at the size limit.

Pure functions over plain data, so the invariants (every problem in exactly one batch,
no batch over the limit, one shape per quantum batch) are easy to test.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence

from batching.records import Batch, PlannedProblem
from batching.routing import RouteDecision, route_problem
from pipeline.engine.shapes import ShapeKey, shape_of


def new_batch_id() -> str:
    return f"b-{secrets.token_hex(8)}"


def plan_batches(
    problems: Sequence[PlannedProblem],
    backend: str,
    why_not: Callable[[int], str | None],
    max_batch_size: int,
) -> list[Batch]:
    """Route each problem, group quantum ones by shape and classical ones by kind, then cut.

    ``why_not(n_qubits)`` is the backend's reason a problem of that size cannot run on it.
    """
    groups: dict[tuple[str, ShapeKey | str], list[tuple[PlannedProblem, RouteDecision]]] = (
        defaultdict(list)
    )
    for problem in problems:
        n = problem.formulation.ising.n
        decision = route_problem(problem.spec.route, n, backend, why_not(n))
        if decision.route == "quantum":
            shape = shape_of(problem.formulation.ising, problem.reps, backend)
            groups[("quantum", shape)].append((problem, decision))
        else:
            groups[("classical", problem.spec.kind)].append((problem, decision))
    batches: list[Batch] = []
    for (route, group_key), members in sorted(groups.items(), key=lambda item: _sort_key(item[0])):
        for start in range(0, len(members), max_batch_size):
            chunk = members[start : start + max_batch_size]
            reasons = sorted({decision.reason for _, decision in chunk})
            batches.append(
                Batch(
                    batch_id=new_batch_id(),
                    route=route,
                    shape=group_key if isinstance(group_key, ShapeKey) else None,
                    problems=tuple(problem for problem, _ in chunk),
                    route_reason="; ".join(reasons[:3])
                    + (f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""),
                    fallbacks={p.problem_id: d.fallback for p, d in chunk if d.fallback},
                )
            )
    return batches


def _sort_key(key: tuple[str, ShapeKey | str]) -> tuple[str, str]:
    route, group = key
    return route, group.label if isinstance(group, ShapeKey) else group
