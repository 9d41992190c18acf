"""What runs on Dask workers: plain data in, plain data out.

Workers receive problem specs as JSON text and (for quantum chunks) a compiled
template, rebuild what they need locally, and return answers as dictionaries. OR-Tools
models are built on the worker because they do not pickle.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.backends import CallPolicy, Ledger, MeteredBackend, get_backend
from pipeline.classical import solve_classical
from pipeline.errors import BackendError, FallbackRequired, PermanentBackendError
from pipeline.formulation import formulate
from pipeline.model import spec_from_record
from pipeline.engine.lockstep import BatchProblem, optimise_batch
from pipeline.engine.templates import PackedTemplate


@dataclass
class ChunkOutcome:
    """Answers of one chunk, keyed by problem id, with the chunk's own timing.

    Quantum chunks also say what their backend calls took (every attempt, failed ones
    included, and what they cost) and, when the backend could not answer, why: ``error``
    is then the fallback reason and ``answers`` is empty. ``cost_usd`` is the backend
    calls' bill plus the core-seconds the fast simulator held (``simulated_s``).
    """

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    worker_pid: int = 0
    problem_ids: list[str] = field(default_factory=list)
    attempts: int = 0
    failures: int = 0
    max_attempts_per_call: int = 0
    cost_usd: float = 0.0
    simulated_s: float = 0.0
    job_ids: list[str] = field(default_factory=list)
    error: str | None = None


def run_quantum_chunk(
    template: PackedTemplate,
    items: list[tuple[str, str, int]],
    backend_spec: str,
    max_qubits: int,
    max_iterations: int,
    seed: int,
    *,
    policy: CallPolicy | None = None,
) -> ChunkOutcome:
    """Optimise ``items`` (problem id, spec JSON, shots) in lockstep on one template.

    Every backend call goes through ``policy`` (timeouts, retries, budget, deadline); a
    backend failure that survives it ends the chunk with ``error`` set, not an exception,
    so the cost and attempts already spent reach the flow with the reason.
    """
    started = time.perf_counter()
    ledger = Ledger()
    policy = policy or CallPolicy()
    backend = MeteredBackend(get_backend(backend_spec, max_qubits), policy, ledger)
    problems = [
        BatchProblem(pid, formulate(spec_from_record(json.loads(text))), shots)
        for pid, text, shots in items
    ]
    outcome = ChunkOutcome(worker_pid=os.getpid(), problem_ids=[p.problem_id for p in problems])
    try:
        answers = optimise_batch(template.unpack(), problems, backend, max_iterations, seed)
    except PermanentBackendError as exc:
        answers, outcome.error = [], f"permanent backend error, not retried: {exc}"
    except (BackendError, FallbackRequired) as exc:
        answers, outcome.error = [], str(exc)
    for answer in answers:
        outcome.answers[answer.problem_id] = asdict(answer) | {
            "proven_optimal": False,
            "provider_job_id": ledger.last_job_id,
        }
    outcome.attempts = ledger.attempts
    outcome.failures = ledger.failures
    outcome.max_attempts_per_call = ledger.max_attempts_per_call
    # Backend calls bill themselves; the fast simulator, which stands in for the
    # simulator's statevector on this worker, bills the core-seconds it held.
    outcome.simulated_s = sum(answer.simulated_s for answer in answers)
    outcome.cost_usd = ledger.cost_usd + outcome.simulated_s * policy.prices.cpu_usd_per_core_second
    outcome.job_ids = ledger.job_ids
    outcome.seconds = time.perf_counter() - started
    return outcome


def run_classical_chunk(
    items: list[tuple[str, str]], time_limit_s: float, workers: int, seed: int
) -> ChunkOutcome:
    """Solve ``items`` (problem id, spec JSON) one by one with CP-SAT."""
    started = time.perf_counter()
    outcome = ChunkOutcome(worker_pid=os.getpid())
    for pid, text in items:
        formulation = formulate(spec_from_record(json.loads(text)))
        answer = solve_classical(formulation, time_limit_s, workers=workers, seed=seed)
        outcome.answers[pid] = {
            "solution": answer.solution,
            "objective": answer.objective,
            "feasible": answer.feasible,
            "proven_optimal": answer.proven_optimal,
            "seconds": answer.wall_s,
            "solver_status": answer.status,
        }
    outcome.seconds = time.perf_counter() - started
    return outcome
