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
from datetime import datetime

from batching.batches import Batch, PlannedProblem, RoutingNumbers
from pipeline.backends import Backend, Workload
from pipeline.config import Settings
from pipeline.fallback import Fallback, FallbackCode
from pipeline.memory import fast_path_bytes
from pipeline.qaoa.evaluators import uses_fast_path
from pipeline.qaoa.shapes import ShapeKey

GRID_SETS = 64  # the engine's depth-1 (gamma, beta) grid
# Evaluations per problem a batch typically takes (the pilots' grid shared, warm starts and
# a few Newton steps: 8-35 measured in bench_engine), for choosing in-process compute.
TYPICAL_EVALUATIONS = 40
RESERVE_FACTOR = 3.0  # a batch may spend up to this multiple of its estimate (retries)


def chunk_count(size: int, n_qubits: int, workers: int, exact: bool, memory_bytes: int) -> int:
    """How many chunks a quantum batch is cut into: one per worker with at least four
    problems each (lockstep pays per call, not per problem), and on the fast path as many
    more as keep each chunk within a worker's memory."""
    chunks = max(1, min(workers, size // 4))
    if exact:
        per_chunk = 1
        while per_chunk < size and fast_path_bytes(n_qubits, per_chunk * 2) <= memory_bytes:
            per_chunk *= 2
        chunks = max(chunks, math.ceil(size / per_chunk))
    return chunks


def workload(
    shape: ShapeKey,
    problems: Sequence[PlannedProblem],
    chunks: int,
    max_iterations: int,
    exact: bool,
    typical: bool = False,
) -> Workload:
    """The engine's calls for one batch: a grid call, refinement steps, a sampling call per
    chunk; ``exact`` when the engine's exact simulator stands in for the backend's estimator."""
    dims = 2 * shape.reps
    stencil = 1 + 2 * dims + 2 * dims * (dims - 1)
    pairs = len(shape.pairs)
    if shape.pooled and problems:  # a pool's template has every pair; each problem has its own
        pairs = math.ceil(sum(len(p.formulation.ising.pairs) for p in problems) / len(problems))
    gates = shape.n_qubits + shape.reps * (pairs + len(shape.linear) + shape.n_qubits)
    return Workload(
        problems=len(problems),
        n_qubits=shape.n_qubits,
        gates=gates,
        calls=chunks * (2 + max_iterations),
        # Budgets are held against the worst case (every problem scans the grid and runs
        # every iteration); ``typical`` is what a batch usually takes, for choosing compute.
        evaluations=len(problems)
        * (TYPICAL_EVALUATIONS if typical else GRID_SETS + max_iterations * stencil),
        shots=sum(p.shots for p in problems),
        exact=exact,
        chunk_problems=math.ceil(len(problems) / chunks),
    )


# CP-SAT's time to prove a problem, measured on this kind of machine (2 CP-SAT workers),
# grows tenfold per so many quadratic terms past a base: MaxCut (one XOR per edge) 0.02 s at
# 50 edges, 0.4 s at 80, 2-5 s at 100, unproved in 10 s past ~110 (bench_estimate's
# workloads; MEASUREMENTS.md: 3-regular, 0.1 s at 45 nodes, 6-18 s at 100); QUBO and
# portfolio (products) 12 ms at 66 terms, 1.0-1.4 s at 190 (dense, 12 and 20 variables).
# Past what it can prove, CP-SAT runs to its time limit.
CPSAT_GROWTH = {"maxcut": (0.025, 50, 25.0)}  # kind: (seconds at base, base terms, per tenfold)
CPSAT_GROWTH_PRODUCTS = (0.012, 66, 62.0)


def classical_seconds(problem: PlannedProblem, time_limit_s: float) -> float:
    """CP-SAT's expected time on one problem: milliseconds when small, its whole time limit
    once it has too many terms to prove optimality (it then uses all of it)."""
    seconds, base, per_tenfold = CPSAT_GROWTH.get(problem.spec.kind, CPSAT_GROWTH_PRODUCTS)
    terms = len(problem.formulation.ising.pairs)
    exponent = min(12.0, (terms - base) / per_tenfold)
    return min(time_limit_s, seconds * 10**exponent)


def route_batches(
    batches: Sequence[Batch],
    backend: Backend,
    settings: Settings,
    now: datetime,
    compiled: Callable[[ShapeKey], bool],
    workers: int,
    budgets: Budgets | None = None,
) -> list[Batch]:
    """Decide quantum or classical for every quantum-eligible batch; classical ones pass through.

    ``budgets``: what is left of the run's budget and quotas (a fresh run's by default).
    ``compiled(shape)`` says whether the shape's template is already stored (no compile
    time to wait for); ``workers`` is how many chunks of a batch run side by side: the live
    count of the cluster the run uses.
    """
    budget, prices = settings.budget, settings.prices
    ledger = budgets or Budgets.for_run(settings)
    order = sorted(range(len(batches)), key=lambda i: _urgency(batches[i]))
    decided: dict[int, Batch] = {}
    for index in order:
        batch = batches[index]
        classical_s = [
            classical_seconds(p, settings.classical.time_limit_s) for p in batch.problems
        ]
        deadline = min(
            (d for p in batch.problems if (d := p.spec.deadline) is not None), default=None
        )
        slack = (deadline - now).total_seconds() if deadline is not None else None
        tenants = sorted({p.spec.tenant for p in batch.problems})
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
            est_classical_cost_usd=sum(classical_s) * prices.cpu_usd_per_core_second,
            est_classical_latency_s=sum(classical_s) / max(1, min(workers, len(classical_s))),
            deadline=deadline,
            deadline_slack_s=slack,
            budget_problem_usd=budget.per_problem_usd,
            budget_run_left_usd=ledger.run_left,
            budget_tenant_left_usd=ledger.quota_left(tenants),
            budget_allotted_usd=0.0,
        )
        if batch.route != "quantum" or batch.shape is None:
            decided[index] = dataclasses.replace(batch, routing=classical_only)
            continue
        exact = uses_fast_path(backend, batch.shape.n_qubits)
        memory = settings.routing.simulator_memory_bytes
        chunks = chunk_count(batch.size, batch.shape.n_qubits, workers, exact, memory)
        work = workload(batch.shape, batch.problems, chunks, settings.quantum.max_iterations, exact)
        estimate = backend.costs.estimate(work, prices, settings.routing.simulator_memory_bytes)
        queue_s = estimate.queue_s + (
            settings.routing.qpu_queue_estimate_s if backend.solver_path == "qpu" else 0.0
        )
        compile_s = 0.0 if compiled(batch.shape) else settings.routing.compile_estimate_s
        execute_s = estimate.execute_s / (chunks if backend.solver_path == "simulator" else 1)
        latency = queue_s + compile_s + execute_s
        cost = estimate.cost_usd
        why_not = estimate.reason or backend.target.why_not(batch.shape.n_qubits)
        refusal: Fallback | None = (
            Fallback(FallbackCode.BACKEND_UNFIT, why_not) if why_not else None
        )
        if refusal is None and slack is not None and latency > slack:
            refusal = Fallback(
                FallbackCode.ROUTE_DEADLINE,
                f"deadline: quantum needs ~{latency:.1f}s (queue {queue_s:.1f}, compile "
                f"{compile_s:.1f}, execute {execute_s:.1f}) but the earliest deadline is in "
                f"{slack:.1f}s",
            )
        refusal = refusal or ledger.refusal(batch, cost, budget.per_problem_usd)
        allotted = 0.0 if refusal else ledger.reserve(batch, cost, budget.per_problem_usd)
        numbers = dataclasses.replace(
            classical_only,
            decision="quantum" if refusal is None else "classical",
            reason=refusal.message
            if refusal
            else (
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
        decided[index] = _apply(batch, numbers, refusal)
    return [decided[i] for i in range(len(batches))]


class Budgets:
    """What is left of the run's budget and of each tenant's quota as batches are routed;
    a run that routes in waves passes one to every wave, so they share one budget."""

    def __init__(self, run_left: float, tenant_left: dict[str, float]) -> None:
        self.run_left = run_left
        self.tenant_left = tenant_left

    @classmethod
    def for_run(cls, settings: Settings) -> Budgets:
        budget = settings.budget
        return cls(budget.per_run_usd, dict(budget.tenant_quota_usd))

    def quota_left(self, tenants: Sequence[str]) -> float | None:
        return min((self.tenant_left[t] for t in tenants if t in self.tenant_left), default=None)

    def refusal(self, batch: Batch, cost: float, per_problem: float) -> Fallback | None:
        if cost / batch.size > per_problem:
            return Fallback(
                FallbackCode.ROUTE_BUDGET,
                f"budget: quantum costs ~{cost / batch.size:.6f} USD per problem, over the "
                f"per-problem budget of {per_problem:.6f} USD",
            )
        if cost > self.run_left:
            return Fallback(
                FallbackCode.ROUTE_BUDGET,
                f"budget: quantum costs ~{cost:.6f} USD, {self.run_left:.6f} USD left of the "
                "run budget",
            )
        for tenant in sorted({p.spec.tenant for p in batch.problems}):
            share = cost * _count(batch, tenant) / batch.size
            if tenant in self.tenant_left and share > self.tenant_left[tenant]:
                return Fallback(
                    FallbackCode.ROUTE_QUOTA,
                    f"quota: tenant {tenant!r} would spend ~{share:.6f} USD, "
                    f"{self.tenant_left[tenant]:.6f} USD left of its quota",
                )
        return None

    def reserve(self, batch: Batch, cost: float, per_problem: float) -> float:
        """Allot the batch what it may spend; set aside a multiple of its estimate.

        It may spend up to its per-problem budgets and what is left of the run's and its
        tenants'; the run and tenants set aside ``RESERVE_FACTOR`` times the estimate.
        """
        tenants = {p.spec.tenant for p in batch.problems}
        allotted = min(
            per_problem * batch.size,
            self.run_left,
            *(
                self.tenant_left[t] * batch.size / _count(batch, t)
                for t in tenants
                if t in self.tenant_left
            ),
        )
        reserved = min(allotted, cost * RESERVE_FACTOR)
        self.run_left -= reserved
        for tenant in tenants:
            if tenant in self.tenant_left:
                self.tenant_left[tenant] -= reserved * _count(batch, tenant) / batch.size
        return allotted


def _apply(batch: Batch, numbers: RoutingNumbers, refusal: Fallback | None) -> Batch:
    if refusal is None:
        return dataclasses.replace(batch, routing=numbers, route_reason=numbers.reason)
    fallbacks = dict(batch.fallbacks)
    for problem in batch.problems:
        if problem.spec.route == "quantum":
            fallbacks.setdefault(problem.problem_id, refusal)
    return dataclasses.replace(
        batch,
        route="classical",
        shape=None,
        route_reason=numbers.reason,
        fallbacks=fallbacks,
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
