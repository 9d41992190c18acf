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

from pipeline.backends import get_backend
from pipeline.classical import solve_classical
from pipeline.formulation import formulate
from pipeline.model import spec_from_record
from pipeline.qaoa_engine import BatchProblem, optimise_batch
from pipeline.templates import CompiledTemplate


@dataclass
class ChunkOutcome:
    """Answers of one chunk, keyed by problem id, with the chunk's own timing."""

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    worker_pid: int = 0


def run_quantum_chunk(
    template: CompiledTemplate,
    items: list[tuple[str, str, int]],
    backend_spec: str,
    max_qubits: int,
    max_iterations: int,
    seed: int,
) -> ChunkOutcome:
    """Optimise ``items`` (problem id, spec JSON, shots) in lockstep on one template."""
    started = time.perf_counter()
    backend = get_backend(backend_spec, max_qubits)
    problems = [
        BatchProblem(pid, formulate(spec_from_record(json.loads(text))), shots)
        for pid, text, shots in items
    ]
    answers = optimise_batch(template, problems, backend, max_iterations, seed)
    outcome = ChunkOutcome(worker_pid=os.getpid())
    for answer in answers:
        outcome.answers[answer.problem_id] = asdict(answer) | {"proven_optimal": False}
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
