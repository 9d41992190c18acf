"""Routing: each batch's route decided once, on its numbers and the rules.

For every batch the quantum route is open to, the backend estimates what the batch's
workload would cost and how long it would run; the router adds the queue and compile
estimates and hands them to the batch rules (:mod:`batching.rules`: the backend's fit, the
deadline, the per-problem budget, what is left of the run's budget and of each tenant's
quota). ``route: auto`` takes quantum unless a rule refuses it; then the batch goes to
CP-SAT, and problems that asked for quantum explicitly are labelled degraded with the
refusal. Every number behind the decision is kept (:class:`RoutingNumbers`) and stored in
the batch's Parquet row.

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
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from batching.batches import Batch, PlannedBatch, PlannedProblem, RoutingNumbers
from batching.rules import QuantumEstimate, Refusal, batch_refusal
from batching.sizing import chunk_count, classical_seconds
from pipeline.backends import Backend, Workload
from pipeline.backends.base import Estimate as BackendEstimate
from pipeline.config import Settings
from pipeline.qaoa.device import DeviceRun, device_run, problems_per_circuit
from pipeline.qaoa.evaluators import uses_fast_path
from pipeline.qaoa.shapes import ShapeKey
from pipeline.vocabulary import Route, SolverPath

GRID_SETS = 64  # the engine's depth-1 (gamma, beta) grid
# Evaluations per problem a batch typically takes (the pilots' grid shared, warm starts and
# a few Newton steps: 8-35 measured in bench_engine), for choosing in-process compute.
TYPICAL_EVALUATIONS = 40
RESERVE_FACTOR = 3.0  # a batch may spend up to this multiple of its estimate (retries)


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


def device_workload(
    shape: ShapeKey, problems: Sequence[PlannedProblem], run: DeviceRun, per_circuit: int
) -> Workload:
    """A batch on a device: one sampler call, ``max(1, evaluations)`` angle sets a problem,
    ``per_circuit`` problems side by side on each circuit; its shots are what the chip runs."""
    work = workload(shape, problems, 1, 0, exact=False)
    sets = max(1, run.evaluations)
    shots = math.ceil(sum(p.shots for p in problems) * sets / per_circuit)
    return dataclasses.replace(work, calls=1, evaluations=0, shots=shots)


def batch_workload(
    shape: ShapeKey,
    problems: Sequence[PlannedProblem],
    backend: Backend,
    settings: Settings,
    chunks: int,
    typical: bool = False,
) -> Workload:
    """What a quantum batch asks of ``backend``: the optimiser's calls, or on a device its
    one sampling call over the circuits its problems pack into."""
    run = device_run(backend, settings.quantum)
    if run is None:
        exact = uses_fast_path(backend, shape.n_qubits)
        return workload(shape, problems, chunks, settings.quantum.max_iterations, exact, typical)
    first = problems[0].formulation.ising.pairs  # the batch's regions follow its first problem
    per_circuit = problems_per_circuit(backend, shape, first, run.fidelity) if run.packing else 1
    return device_workload(shape, problems, run, per_circuit)


def route_batches(
    batches: Sequence[PlannedBatch],
    backend: Backend,
    settings: Settings,
    now: datetime,
    compiled: Callable[[ShapeKey], bool],
    workers: int,
    budgets: Budgets | None = None,
) -> list[Batch]:
    """Decide every batch's route, once: classical where a problem rule refused quantum,
    else quantum unless a batch rule refuses it (:mod:`batching.rules`, in order).

    ``budgets``: what is left of the run's budget and quotas (a fresh run's by default).
    ``compiled(shape)`` says whether the shape's template is already stored (no compile
    time to wait for); ``workers`` is how many chunks of a batch run side by side: the live
    count of the cluster the run uses. Batches are decided earliest deadline first.
    """
    ledger = budgets or Budgets.for_run(settings)
    device_chunks = 0 if device_run(backend, settings.quantum) is None else 1
    decided: dict[int, Batch] = {}
    for index in sorted(range(len(batches)), key=lambda i: _urgency(batches[i])):
        batch = batches[index]
        seconds = [classical_seconds(p, settings.classical.time_limit_s) for p in batch.problems]
        base = _classical_numbers(batch, backend, settings, now, workers, ledger, seconds)
        if batch.shape is None:
            decided[index] = _routed(batch, base, sum(seconds))
            continue
        # On a device a batch is one sampler call: its jobs hold every problem at once.
        chunks = device_chunks or chunk_count(
            batch.size,
            batch.shape.n_qubits,
            workers,
            uses_fast_path(backend, batch.shape.n_qubits),
            settings.routing.simulator_memory_bytes,
        )
        estimate, costed = _quantum_estimate(batch, backend, settings, chunks, compiled, base)
        refusal = batch_refusal(estimate, ledger)
        allotted = 0.0 if refusal else ledger.reserve(batch, estimate.cost_usd)
        numbers = _quantum_numbers(base, estimate, costed, refusal, allotted, backend.name)
        decided[index] = _routed(batch, numbers, sum(seconds), refusal, chunks)
    return [decided[i] for i in range(len(batches))]


def _classical_numbers(
    batch: PlannedBatch,
    backend: Backend,
    settings: Settings,
    now: datetime,
    workers: int,
    ledger: Budgets,
    seconds: Sequence[float],
) -> RoutingNumbers:
    """The batch's numbers on the classical route (``seconds``: CP-SAT's expected time on
    each problem), and what every route shares (deadline, budgets): all a batch quantum is
    closed to gets."""
    deadline = min((d for p in batch.problems if (d := p.spec.deadline) is not None), default=None)
    return RoutingNumbers(
        decision=Route.CLASSICAL,
        reason=batch.route_reason,
        est_backend=backend.name,
        est_quantum_feasible=False,
        est_quantum_cost_usd=None,
        est_quantum_queue_s=None,
        est_quantum_compile_s=None,
        est_quantum_execute_s=None,
        est_quantum_latency_s=None,
        est_quantum_memory_bytes=None,
        est_classical_cost_usd=sum(seconds) * settings.prices.cpu_usd_per_core_second,
        est_classical_latency_s=sum(seconds) / max(1, min(workers, len(seconds))),
        deadline=deadline,
        deadline_slack_s=(deadline - now).total_seconds() if deadline is not None else None,
        budget_problem_usd=ledger.per_problem_usd,
        budget_run_left_usd=ledger.run_left,
        budget_tenant_left_usd=ledger.quota_left(sorted({p.spec.tenant for p in batch.problems})),
        budget_allotted_usd=0.0,
    )


def _quantum_estimate(
    batch: PlannedBatch,
    backend: Backend,
    settings: Settings,
    chunks: int,
    compiled: Callable[[ShapeKey], bool],
    base: RoutingNumbers,
) -> tuple[QuantumEstimate, BackendEstimate]:
    """What the batch would take on the quantum backend, as the batch rules read it."""
    assert batch.shape is not None
    n = batch.shape.n_qubits
    work = batch_workload(batch.shape, batch.problems, backend, settings, chunks)
    estimate = backend.costs.estimate(
        work, settings.prices, settings.routing.simulator_memory_bytes
    )
    qpu = backend.solver_path == SolverPath.QPU
    tenants = Counter(p.spec.tenant for p in batch.problems)
    return QuantumEstimate(
        size=batch.size,
        cost_usd=estimate.cost_usd,
        queue_s=estimate.queue_s + (settings.routing.qpu_queue_estimate_s if qpu else 0.0),
        compile_s=0.0 if compiled(batch.shape) else settings.routing.compile_estimate_s,
        execute_s=estimate.execute_s / (1 if qpu else chunks),
        backend_refuses=estimate.reason or backend.target.why_not(n),
        slack_s=base.deadline_slack_s,
        tenants=dict(tenants),
    ), estimate


def _quantum_numbers(
    base: RoutingNumbers,
    estimate: QuantumEstimate,
    backend_estimate: BackendEstimate,
    refusal: Refusal | None,
    allotted: float,
    backend: str,
) -> RoutingNumbers:
    if refusal is not None:
        reason = refusal.message
    else:
        slack = estimate.slack_s
        reason = (
            f"{base.reason}; ~{estimate.cost_usd:.6f} USD and ~{estimate.latency_s:.1f}s on "
            f"{backend}, within budget"
            + (f" and {slack:.0f}s before the deadline" if slack is not None else "")
        )
    return dataclasses.replace(
        base,
        decision=Route.QUANTUM if refusal is None else Route.CLASSICAL,
        reason=reason,
        est_quantum_feasible=backend_estimate.reason is None,
        est_quantum_cost_usd=estimate.cost_usd,
        est_quantum_queue_s=estimate.queue_s,
        est_quantum_compile_s=estimate.compile_s,
        est_quantum_execute_s=backend_estimate.execute_s,
        est_quantum_latency_s=estimate.latency_s,
        est_quantum_memory_bytes=backend_estimate.memory_bytes,
        budget_allotted_usd=allotted,
    )


class Budgets:
    """What is left of the run's budget and of each tenant's quota as batches are routed;
    a run that routes in waves passes one to every wave, so they share one budget."""

    def __init__(
        self, per_problem_usd: float, run_left: float, tenant_left: dict[str, float]
    ) -> None:
        self.per_problem_usd = per_problem_usd
        self.run_left = run_left
        self.tenant_left = tenant_left

    @classmethod
    def for_run(cls, settings: Settings) -> Budgets:
        budget = settings.budget
        return cls(budget.per_problem_usd, budget.per_run_usd, dict(budget.tenant_quota_usd))

    def quota_left(self, tenants: Sequence[str]) -> float | None:
        return min((self.tenant_left[t] for t in tenants if t in self.tenant_left), default=None)

    def reserve(self, batch: PlannedBatch, cost: float) -> float:
        """Allot the batch what it may spend; set aside a multiple of its estimate.

        It may spend up to its per-problem budgets and what is left of the run's and its
        tenants'; the run and tenants set aside ``RESERVE_FACTOR`` times the estimate.
        """
        tenants = Counter(p.spec.tenant for p in batch.problems)
        allotted = min(
            self.per_problem_usd * batch.size,
            self.run_left,
            *(
                self.tenant_left[t] * batch.size / n
                for t, n in tenants.items()
                if t in self.tenant_left
            ),
        )
        reserved = min(allotted, cost * RESERVE_FACTOR)
        self.run_left -= reserved
        for tenant, count in tenants.items():
            if tenant in self.tenant_left:
                self.tenant_left[tenant] -= reserved * count / batch.size
        return allotted


def _routed(
    batch: PlannedBatch,
    numbers: RoutingNumbers,
    classical_s: float,
    refusal: Refusal | None = None,
    chunks: int = 1,
) -> Batch:
    """The planned batch on its route. A quantum batch refused by a batch rule runs on
    CP-SAT (no shape); its problems that asked for quantum are labelled with the refusal."""
    fallbacks = dict(batch.fallbacks)
    if refusal is not None and (fallback := refusal.fallback()) is not None:
        for problem in batch.problems:
            if problem.spec.route == Route.QUANTUM:
                fallbacks.setdefault(problem.problem_id, fallback)
    quantum = numbers.decision == Route.QUANTUM
    return Batch(
        batch_id=batch.batch_id,
        route=numbers.decision,
        shape=batch.shape if quantum else None,
        problems=batch.problems,
        route_reason=numbers.reason,
        fallbacks=fallbacks,
        routing=numbers,
        chunks=chunks if quantum else 1,
        classical_s=classical_s,
    )


def _urgency(batch: PlannedBatch) -> tuple[float, int]:
    deadlines = [d.timestamp() for p in batch.problems if (d := p.spec.deadline) is not None]
    return (
        min(deadlines) if deadlines else math.inf,
        -max(p.spec.priority for p in batch.problems),
    )
