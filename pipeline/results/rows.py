"""Typed result records: one row per problem, per batch and per run; drift and canary rows.

The Parquet schemas are derived from these classes (:mod:`pipeline.results.schema`), so a
new column is one new field here. Times are UTC; every ``t_*_s`` is in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import pyarrow as pa

from pipeline.canary.vocabulary import CanaryStatus
from pipeline.fallback import FallbackCode
from pipeline.results.schema import SCHEMA_VERSION, arrow
from pipeline.vocabulary import Route, SolverPath, State


@dataclass(frozen=True)
class ProblemRow:
    """One problem's answer (or why there is none), in the problem's own sense and units."""

    problem_id: str
    key: str
    run_id: str
    batch_id: str
    kind: str
    n_variables: int = arrow(pa.int32())
    tenant: str = "default"
    attempts: int = arrow(pa.int32(), 1)  # claims so far, this one included
    shape_key: str | None = None
    route: Route | None = None  # None when it never ran
    solver_path: SolverPath | None = None
    backend: str | None = None
    status: State = State.FAILED  # completed | degraded | failed
    fallback_code: FallbackCode | None = None
    fallback_reason: str | None = None
    solution: str | None = None  # '0'/'1' per variable, variable 0 first
    objective: float | None = None
    feasible: bool = False
    proven_optimal: bool = False
    bound: float | None = None  # the classical solver's best bound, in the problem's sense
    gap: float | None = None  # |bound - objective| / max(1, |objective|)
    expected_objective: float | None = None  # quantum: the QAOA expectation at final angles
    angles: tuple[float, ...] | None = None  # quantum: gammas then betas
    qubits: tuple[int, ...] | None = arrow(pa.list_(pa.int32()), None)  # a device's, where it ran
    # A classical answer to the same problem, so every quantum answer can be judged.
    reference_objective: float | None = None
    reference_solver: str | None = None
    reference_proven: bool | None = None
    reference_note: str | None = None  # e.g. a known public instance and its optimum
    # The largest |objective| any assignment can have (pipeline.quality): a reference below
    # 1 % of it is near zero, and answers against it are judged by their gap, not a ratio.
    objective_scale: float | None = None
    reps: int | None = arrow(pa.int32(), None)
    shots: int | None = arrow(pa.int32(), None)
    evaluations: int = 0
    cost_usd: float = 0.0
    t_queue_s: float = 0.0
    t_compile_s: float = 0.0
    t_execute_s: float = 0.0
    t_post_s: float = 0.0
    t_total_s: float = 0.0
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    provider_job_id: str | None = None
    circuit_hash: str | None = None
    input_hash: str | None = None
    trace_id: str | None = None  # the caller's W3C trace id, when it sent one
    # A requeued problem's new answer: the batch of the row it replaces, which the
    # ``problems`` view then hides (``problems_all`` keeps every row).
    supersedes: str | None = None
    schema_version: int = arrow(pa.int32(), SCHEMA_VERSION)


@dataclass(frozen=True)
class BatchRow:
    """One batch: its shape, route and the numbers behind the route, attempts, time, cost."""

    batch_id: str
    run_id: str
    route: Route | None
    route_reason: str | None
    shape_key: str | None
    kind: str
    size: int = arrow(pa.int32())
    n_qubits: int | None = arrow(pa.int32(), None)
    reps: int | None = arrow(pa.int32(), None)
    backend: str | None = None
    solver_path: SolverPath | None = None
    executor: str | None = None  # inline | local-cluster | a scheduler address
    attempts: int = arrow(pa.int32(), 0)
    templates_compiled: int = arrow(pa.int32(), 0)
    templates_reused: int = arrow(pa.int32(), 0)
    artifact_key: str | None = None
    chunks: int = arrow(pa.int32(), 0)
    evaluations: int = 0
    t_compile_s: float = 0.0
    t_execute_s: float = 0.0
    t_post_s: float = 0.0
    cost_usd: float = 0.0
    # Routing economics: the estimates and limits behind the route (batching.economics).
    est_backend: str | None = None
    est_quantum_feasible: bool | None = None
    est_quantum_cost_usd: float | None = None
    est_quantum_queue_s: float | None = None
    est_quantum_compile_s: float | None = None
    est_quantum_execute_s: float | None = None
    est_quantum_latency_s: float | None = None
    est_quantum_memory_bytes: int | None = None
    est_classical_cost_usd: float | None = None
    est_classical_latency_s: float | None = None
    deadline: datetime | None = None
    deadline_slack_s: float | None = None
    budget_problem_usd: float | None = None
    budget_run_left_usd: float | None = None
    budget_tenant_left_usd: float | None = None
    budget_allotted_usd: float | None = None
    # What execution on the quantum backend took: every attempt, failed ones included.
    backend_attempts: int = arrow(pa.int32(), 0)
    backend_failures: int = arrow(pa.int32(), 0)
    max_attempts_per_call: int = arrow(pa.int32(), 0)
    jobs: int = arrow(pa.int32(), 0)  # provider jobs made for the batch, retries included
    problems_per_job: float | None = None  # problems answered on the backend per job
    qpu_seconds: float = 0.0  # on a device: its jobs' QPU time, by the price model
    quantum_cost_usd: float = 0.0
    provider_job_ids: str | None = None
    fallback_reason: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    schema_version: int = arrow(pa.int32(), SCHEMA_VERSION)


class RunStatus(StrEnum):
    """How a run ended: it finished, it was stopped cleanly (Ctrl-C, SIGTERM, its own
    timeout: what it held went back with the attempt given back too), or it raised."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


@dataclass(frozen=True)
class RunSummary:
    """One flow run, as ``run_once`` returns it and ``runs/`` stores it (every run that
    claimed anything, however it ended)."""

    run_id: str
    backend: str
    executor: str  # inline | local-cluster | a scheduler address
    status: RunStatus = RunStatus.COMPLETED
    error: str | None = None  # why it was interrupted or failed
    problems: int = arrow(pa.int32(), 0)
    completed: int = arrow(pa.int32(), 0)
    degraded: int = arrow(pa.int32(), 0)
    failed: int = arrow(pa.int32(), 0)
    released: int = arrow(pa.int32(), 0)  # handed back to the queue for another attempt
    batches: int = arrow(pa.int32(), 0)
    quantum_batches: int = arrow(pa.int32(), 0)
    classical_batches: int = arrow(pa.int32(), 0)
    problems_per_batch: float = 0.0  # how well the run pooled its problems into batches
    templates_compiled: int = arrow(pa.int32(), 0)
    templates_reused: int = arrow(pa.int32(), 0)
    recovered_batches: int = arrow(pa.int32(), 0)
    t_recover_s: float = 0.0
    t_collect_s: float = 0.0
    t_plan_s: float = 0.0
    t_compile_s: float = 0.0
    t_cluster_wait_s: float = 0.0
    t_execute_s: float = 0.0
    t_total_s: float = 0.0
    cost_usd: float = 0.0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    schema_version: int = arrow(pa.int32(), SCHEMA_VERSION)


@dataclass(frozen=True)
class DriftRow:
    """One stored quantum answer executed again on another backend at its stored angles."""

    drift_id: str
    problem_id: str
    batch_id: str
    kind: str
    n_variables: int = arrow(pa.int32())
    reps: int = arrow(pa.int32())
    stored_backend: str = ""
    replay_backend: str = ""
    stored_expected: float | None = None
    replay_expected: float | None = None
    stored_objective: float | None = None
    replay_objective: float | None = None
    difference: float | None = None  # replay_expected - stored_expected, the problem's units
    reference_objective: float | None = None
    created_at: datetime | None = None
    schema_version: int = arrow(pa.int32(), SCHEMA_VERSION)


@dataclass(frozen=True)
class CanaryRow:
    """One quantum answer of a run, sampled again on a candidate backend beside the run at the
    angles the main backend reached (flows.canary): both sides' expectation, best sample,
    time and cost. A candidate that failed leaves the row ``failed`` with its ``error``."""

    run_id: str
    batch_id: str
    problem_id: str
    kind: str
    n_variables: int = arrow(pa.int32())
    reps: int | None = arrow(pa.int32(), None)
    shots: int | None = arrow(pa.int32(), None)
    main_backend: str = ""
    canary_backend: str = ""
    status: CanaryStatus = CanaryStatus.FAILED
    error: str | None = None  # why the candidate gave no answer: "<where>: <Type>: <message>"
    main_expected: float | None = None
    canary_expected: float | None = None
    expected_difference: float | None = None  # canary_expected - main_expected, problem units
    # expected_difference as a share of |reference_objective| (pipeline.quality.relative_to),
    # or of the objective's scale where the reference is near zero: what the verdict judges.
    relative_difference: float | None = None
    main_objective: float | None = None  # the best sample's objective, the problem's sense
    canary_objective: float | None = None
    main_solution: str | None = None  # '0'/'1' per variable, variable 0 first
    canary_solution: str | None = None
    reference_objective: float | None = None  # the classical reference of the problem row
    objective_scale: float | None = None
    main_seconds: float | None = None  # the seconds of the task that answered it, each side
    canary_seconds: float | None = None
    main_cost_usd: float | None = None  # the problem's share of its task's bill, each side
    canary_cost_usd: float | None = None
    created_at: datetime | None = None
    schema_version: int = arrow(pa.int32(), SCHEMA_VERSION)
