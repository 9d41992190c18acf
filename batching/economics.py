"""Routing economics: per batch, is the quantum backend feasible, affordable and on time?

For every quantum-eligible batch the backend estimates what the batch's workload would
cost and how long it would run; the router adds the queue and compile estimates, and
compares the result with the problems' deadlines, the per-problem budget, what is left
of the run's budget and of each tenant's quota. ``route: auto`` takes quantum whenever
all of that holds; otherwise the batch goes to CP-SAT, and problems that asked for
quantum explicitly are labelled degraded with the reason. Every number behind the
decision is kept (:class:`RoutingNumbers`) and stored in the batch's Parquet row.

Batches are considered earliest deadline first, then by priority, so scarce budget goes
to the work that needs it soonest. A quantum batch may spend at run time, failed
attempts included, at most its per-problem budgets and what is left of the run's and its
tenants' (``budget_allotted_usd``); the run and the tenants set aside ``RESERVE_FACTOR``
times its estimate, so their budgets hold as long as retries cost at most that much more
than the estimate, and a per-problem budget always holds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from batching.planner import Batch, PlannedProblem
from pipeline.engine.shapes import ShapeKey
from pipeline.backends.base import QuantumBackend, Workload
from pipeline.config import Settings

GRID_SETS = 64  # the engine's depth-1 (gamma, beta) grid
RESERVE_FACTOR = 3.0  # a batch may spend up to this multiple of its estimate (retries)


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

    def columns(self) -> dict[str, object]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("decision", "reason")
        }


def workload(
    shape: ShapeKey, problems: Sequence[PlannedProblem], chunks: int, max_iterations: int
) -> Workload:
    """The engine's calls for one batch: a grid call, refinement steps, a sampling call per chunk."""
    dims = 2 * shape.reps
    stencil = 1 + 2 * dims + 2 * dims * (dims - 1)
    gates = shape.n_qubits + shape.reps * (len(shape.pairs) + len(shape.linear) + shape.n_qubits)
    return Workload(
        problems=len(problems),
        n_qubits=shape.n_qubits,
        gates=gates,
        calls=chunks * (2 + max_iterations),
        evaluations=len(problems) * (GRID_SETS + max_iterations * stencil),
        shots=sum(p.shots for p in problems),
    )


def classical_seconds(problem: PlannedProblem, time_limit_s: float) -> float:
    """CP-SAT's expected time on one problem: small ones prove optimality in milliseconds."""
    n = problem.formulation.ising.n
    return min(time_limit_s, 0.02 + 2e-4 * n * n)


def route_batches(
    batches: Sequence[Batch],
    backend: QuantumBackend,
    settings: Settings,
    now: datetime,
    compiled: Callable[[ShapeKey], bool],
    workers: int,
) -> list[Batch]:
    """Decide quantum or classical for every quantum-eligible batch; classical ones pass through.

    ``compiled(shape)`` says whether the shape's template is already stored (no compile
    time to wait for); ``workers`` is how many chunks of a batch run side by side.
    """
    budget, prices = settings.budget, settings.prices
    run_left = budget.per_run_usd
    tenant_left = dict(budget.tenant_quota_usd)
    order = sorted(range(len(batches)), key=lambda i: _urgency(batches[i]))
    decided: dict[int, Batch] = {}
    for index in order:
        batch = batches[index]
        classical_s = [
            classical_seconds(p, settings.classical.time_limit_s) for p in batch.problems
        ]
        classical_cost = sum(classical_s) * prices.cpu_usd_per_core_second
        classical_latency = sum(classical_s) / max(1, min(workers, len(classical_s)))
        deadline = min(
            (d for p in batch.problems if (d := p.spec.deadline) is not None), default=None
        )
        slack = (deadline - now).total_seconds() if deadline is not None else None
        tenants = sorted({p.spec.tenant for p in batch.problems})
        quota_left = min((tenant_left[t] for t in tenants if t in tenant_left), default=None)
        classical_only = RoutingNumbers(
            decision="classical",
            reason=batch.route_reason,
            est_backend=backend.name,
            est_quantum_feasible=False,
            est_quantum_cost_usd=None,
            est_quantum_queue_s=None,
            est_quantum_compile_s=None,
            est_quantum_execute_s=None,
            est_quantum_latency_s=None,
            est_quantum_memory_bytes=None,
            est_classical_cost_usd=classical_cost,
            est_classical_latency_s=classical_latency,
            deadline=deadline,
            deadline_slack_s=slack,
            budget_problem_usd=budget.per_problem_usd,
            budget_run_left_usd=run_left,
            budget_tenant_left_usd=quota_left,
            budget_allotted_usd=0.0,
        )
        if batch.route != "quantum" or batch.shape is None:
            decided[index] = dataclasses.replace(batch, routing=classical_only)
            continue
        chunks = max(1, min(workers, batch.size // 4))
        work = workload(batch.shape, batch.problems, chunks, settings.quantum.max_iterations)
        estimate = backend.estimate(work, prices, settings.routing.simulator_memory_bytes)
        queue_s = estimate.queue_s + (
            settings.routing.qpu_queue_estimate_s if backend.solver_path == "qpu" else 0.0
        )
        compile_s = 0.0 if compiled(batch.shape) else settings.routing.compile_estimate_s
        parallel = chunks if backend.solver_path == "simulator" else 1
        latency = queue_s + compile_s + estimate.execute_s / parallel
        cost = estimate.cost_usd
        shares = {
            t: cost * sum(p.spec.tenant == t for p in batch.problems) / batch.size for t in tenants
        }
        reason: str | None = estimate.reason or backend.incompatibility(batch.shape.n_qubits)
        if reason is None and slack is not None and latency > slack:
            reason = (
                f"deadline: quantum needs ~{latency:.1f}s (queue {queue_s:.1f}, compile "
                f"{compile_s:.1f}, execute {estimate.execute_s / parallel:.1f}) but the earliest "
                f"deadline is in {slack:.1f}s"
            )
        if reason is None and cost / batch.size > budget.per_problem_usd:
            reason = (
                f"budget: quantum costs ~{cost / batch.size:.6f} USD per problem, over the "
                f"per-problem budget of {budget.per_problem_usd:.6f} USD"
            )
        if reason is None and cost > run_left:
            reason = (
                f"budget: quantum costs ~{cost:.6f} USD, {run_left:.6f} USD left of the run budget"
            )
        if reason is None:
            for tenant, share in shares.items():
                if tenant in tenant_left and share > tenant_left[tenant]:
                    reason = (
                        f"quota: tenant {tenant!r} would spend ~{share:.6f} USD, "
                        f"{tenant_left[tenant]:.6f} USD left of its quota"
                    )
                    break
        allotted = 0.0
        if reason is None:
            # The batch may spend up to its per-problem budgets (and what is left of the
            # run's and its tenants'); the run and tenants set aside a multiple of the estimate.
            allotted = min(
                budget.per_problem_usd * batch.size,
                run_left,
                *(
                    tenant_left[t] * batch.size / _count(batch, t)
                    for t in shares
                    if t in tenant_left
                ),
            )
            reserved = min(allotted, cost * RESERVE_FACTOR)
            run_left -= reserved
            for tenant in shares:
                if tenant in tenant_left:
                    tenant_left[tenant] -= reserved * _count(batch, tenant) / batch.size
        numbers = dataclasses.replace(
            classical_only,
            decision="quantum" if reason is None else "classical",
            reason=reason
            or (
                f"{batch.route_reason}; ~{cost:.6f} USD and ~{latency:.1f}s on {backend.name}, "
                "within budget"
                + (f" and {slack:.0f}s before the deadline" if slack is not None else "")
            ),
            est_quantum_feasible=(estimate.reason is None),
            est_quantum_cost_usd=cost,
            est_quantum_queue_s=queue_s,
            est_quantum_compile_s=compile_s,
            est_quantum_execute_s=estimate.execute_s,
            est_quantum_latency_s=latency,
            est_quantum_memory_bytes=estimate.memory_bytes,
            budget_allotted_usd=allotted,
        )
        decided[index] = _apply(batch, numbers)
    return [decided[i] for i in range(len(batches))]


def _apply(batch: Batch, numbers: RoutingNumbers) -> Batch:
    if numbers.decision == "quantum":
        return dataclasses.replace(batch, routing=numbers, route_reason=numbers.reason)
    fallbacks = dict(batch.fallback_reasons)
    for problem in batch.problems:
        if problem.spec.route == "quantum":
            fallbacks.setdefault(problem.problem_id, numbers.reason)
    return dataclasses.replace(
        batch,
        route="classical",
        shape=None,
        route_reason=numbers.reason,
        fallback_reasons=fallbacks,
        routing=numbers,
    )


def _count(batch: Batch, tenant: str) -> int:
    return sum(p.spec.tenant == tenant for p in batch.problems)


def _urgency(batch: Batch) -> tuple[float, int]:
    deadlines = [d.timestamp() for p in batch.problems if (d := p.spec.deadline) is not None]
    return (
        min(deadlines) if deadlines else math.inf,
        -max(p.spec.priority for p in batch.problems),
    )
