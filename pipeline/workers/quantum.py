"""The quantum worker's entry point: one task in, one typed result out, never an exception
for a backend that gives up.

A chunk's problems share one template and are optimised in lockstep; every backend call
goes through a :class:`BackendCaller` under the task's policy, and its :class:`Ledger`
comes back with the answers. When the backend gives up (retries exhausted, a permanent
error, an outage, the budget or the deadline), the result carries no answers and a
:class:`Fallback` with a stable code, so the run charges what was spent and sends the
problems to CP-SAT.
"""

from __future__ import annotations

import os
import socket
import time

from pipeline.backends.calls import BackendCaller, Ledger
from pipeline.backends.registry import get_backend
from pipeline.errors import (
    BackendError,
    BackendUnavailable,
    BudgetExhausted,
    DeadlineExceeded,
    FallbackRequired,
    PermanentBackendError,
    TransientBackendError,
)
from pipeline.fallback import FallbackCode
from pipeline.qaoa.angles import ClassAngles, TransferCheck
from pipeline.qaoa.device import run_on_device
from pipeline.qaoa.evaluators import BatchProblem
from pipeline.qaoa.lockstep import QuantumAnswer, optimise_chunk
from pipeline.tasks import Answer, ChunkResult, Fallback, QuantumChunkTask

# Most specific first: BackendUnavailable is a TransientBackendError.
_FALLBACK_CODES: tuple[tuple[type[Exception], FallbackCode], ...] = (
    (BackendUnavailable, FallbackCode.BACKEND_UNAVAILABLE),
    (TransientBackendError, FallbackCode.BACKEND_TRANSIENT),
    (PermanentBackendError, FallbackCode.BACKEND_PERMANENT),
    (BudgetExhausted, FallbackCode.BUDGET_EXHAUSTED),
    (DeadlineExceeded, FallbackCode.DEADLINE_EXCEEDED),
    (BackendError, FallbackCode.BACKEND_ERROR),
    (FallbackRequired, FallbackCode.FALLBACK_REQUIRED),
)


def fallback_for(error: BackendError | FallbackRequired) -> Fallback:
    """The stable code of why a backend gave up, with its sentence."""
    code = next(code for kind, code in _FALLBACK_CODES if isinstance(error, kind))
    message = str(error)
    if isinstance(error, PermanentBackendError):
        message = f"permanent backend error, not retried: {error}"
    return Fallback(code, message)


def run_quantum_chunk(task: QuantumChunkTask) -> ChunkResult:
    """Optimise ``task.problems`` in lockstep on its template (on a device: sample them at
    their class's angles); one Answer per problem.

    ``seconds`` and ``cost_usd`` of each answer are the chunk's time and bill (backend
    calls plus the fast simulator's core-seconds) split evenly among its problems.
    """
    started = time.perf_counter()
    ledger = Ledger()
    problems = [BatchProblem(w.problem_id, w.formulation, w.shots) for w in task.problems]
    fallback: Fallback | None = None
    answers: list[QuantumAnswer] = []
    learned = None
    try:  # a backend that cannot be reached from this worker (credentials, network) falls back
        backend = get_backend(task.backend_spec, task.max_qubits)
        answers, learned = _solve(task, problems, BackendCaller(backend, task.policy, ledger))
    except (BackendError, FallbackRequired) as exc:
        fallback = fallback_for(exc)
    # Backend calls bill themselves; the fast simulator, which stands in for the
    # simulator's statevector on this worker, bills the core-seconds it held.
    simulated_s = sum(answer.simulated_s for answer in answers)
    prices = task.policy.prices
    cost = ledger.cost_usd + simulated_s * prices.cpu_usd_per_core_second
    seconds = time.perf_counter() - started
    share = max(1, len(answers))
    return ChunkResult(
        problem_ids=tuple(p.problem_id for p in problems),
        answers=tuple(_answer(a, seconds / share, cost / share, ledger) for a in answers),
        worker=f"{socket.gethostname()}:{os.getpid()}",
        seconds=seconds,
        cost_usd=cost,
        attempts=ledger.attempts,
        failures=ledger.failures,
        max_attempts_per_call=ledger.max_attempts_per_call,
        job_ids=tuple(ledger.job_ids),
        jobs=ledger.jobs,
        executions=ledger.executions,
        qpu_seconds=prices.qpu_seconds(ledger.jobs, ledger.executions) if task.device else 0.0,
        fallback=fallback,
        learned=learned,
    )


def _solve(
    task: QuantumChunkTask, problems: list[BatchProblem], caller: BackendCaller
) -> tuple[list[QuantumAnswer], ClassAngles | TransferCheck | None]:
    """The chunk's answers: sampled at once on a device, else optimised in lockstep; and
    what its pilots found or following measured (nothing on a device)."""
    template = task.template.unpack()
    if task.device is not None:
        return run_on_device(
            template, problems, caller, task.angle_plan, task.device, task.seed
        ), None
    # The run core looks the batch's plan up in the angle library before dispatch.
    return optimise_chunk(
        template, problems, caller, task.max_iterations, task.seed, start=task.angle_plan
    )


def _answer(found: QuantumAnswer, seconds: float, cost_usd: float, ledger: Ledger) -> Answer:
    """One problem's answer with its share of the chunk's time and bill."""
    return Answer(
        problem_id=found.problem_id,
        solution=found.solution,
        objective=found.objective,
        feasible=found.feasible,
        proven_optimal=False,
        seconds=seconds,
        cost_usd=cost_usd,
        expected_objective=found.expected_objective,
        evaluations=found.evaluations,
        reps=found.reps,
        angles=found.angles,
        provider_job_id=ledger.last_job_id,
        qubits=found.qubits,
    )
