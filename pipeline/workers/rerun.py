"""Quantum answers executed again at their angles: replay, drift and the canary.

A replay task carries problems with the angles their rows store; the worker evaluates
the exact QAOA expectation there and samples the shots with the stored seed, exactly as
the last step of the lockstep optimiser did. On the same backend, with the chunk's
problems in their stored order, this reproduces the stored answers; on another backend
(a noisy simulator, a device) it measures how the answers drift.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import numpy as np

from pipeline.backends import Backend, BackendCaller, CallPolicy, Ledger, get_backend
from pipeline.formulation import Formulation
from pipeline.qaoa.evaluators import BatchProblem, EvaluatorChoice, choose_evaluator, uses_fast_path
from pipeline.qaoa.sampling import best_sample, draw, expectations
from pipeline.qaoa.shapes import ShapeKey, batch_shape, is_pool_label
from pipeline.qaoa.templates import PackedTemplate
from pipeline.tasks import Answer, ChunkResult, WorkItem


@dataclass(frozen=True)
class ReplayTask:
    """A chunk's problems with their stored angles (gammas then betas), on one template."""

    template: PackedTemplate
    problems: tuple[WorkItem, ...]
    angles: tuple[tuple[float, ...], ...]
    backend_spec: str
    max_qubits: int
    seed: int
    policy: CallPolicy


def rerun_shape(
    formulation: Formulation, reps: int, stored_shape: str | None, backend: Backend
) -> ShapeKey:
    """The template an answer runs on again on ``backend``: its pool where it ran pooled
    (``stored_shape``, its row's ``shape_key``) and ``backend`` is simulated exactly, else
    its exact structure (a device needs it)."""
    ising = formulation.ising
    pooled = is_pool_label(stored_shape) and uses_fast_path(backend, ising.n)
    return batch_shape(ising, reps, backend.name, pooled)


def replay_chunk(task: ReplayTask) -> ChunkResult:
    """Expectation and best sample of every problem at its stored angles."""
    started = time.perf_counter()
    ledger = Ledger()
    caller = BackendCaller(get_backend(task.backend_spec, task.max_qubits), task.policy, ledger)
    template = task.template.unpack()
    problems = [BatchProblem(w.problem_id, w.formulation, w.shots) for w in task.problems]
    reps = len(task.angles[0]) // 2
    angles = np.asarray(task.angles, dtype=np.float64).reshape(len(problems), 2 * reps)
    gammas, betas = angles[:, :reps].copy(), angles[:, reps:].copy()
    evaluator = choose_evaluator(EvaluatorChoice.AUTO, template, problems, caller, task.seed)
    rows = np.arange(len(problems))
    energies = evaluator.energies(rows, gammas[:, None, :], betas[:, None, :])[:, 0]
    exact = evaluator.expected_objectives(gammas, betas, energies)
    samples = draw(evaluator, problems, caller, gammas, betas, task.seed)
    expected = expectations(exact, problems, samples)
    seconds = time.perf_counter() - started
    answers = []
    for b, problem in enumerate(problems):
        solution, objective, feasible = best_sample(problem.formulation, samples[b])
        answers.append(
            Answer(
                problem_id=problem.problem_id,
                solution=solution,
                objective=objective,
                feasible=feasible,
                proven_optimal=False,
                seconds=seconds / len(problems),
                cost_usd=ledger.cost_usd / len(problems),
                expected_objective=expected[b],
                evaluations=int(evaluator.evaluations[b]),
                reps=reps,
                angles=tuple(map(float, angles[b])),
                provider_job_id=ledger.last_job_id,
            )
        )
    return ChunkResult(
        problem_ids=tuple(p.problem_id for p in problems),
        answers=tuple(answers),
        worker=f"{socket.gethostname()}:{os.getpid()}",
        seconds=seconds,
        cost_usd=ledger.cost_usd,
        attempts=ledger.attempts,
        failures=ledger.failures,
        job_ids=tuple(ledger.job_ids),
    )
