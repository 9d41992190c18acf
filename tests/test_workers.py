"""What a Dask worker runs (pipeline/workers/): a quantum chunk (batched QAOA on its template,
the backend calls, the bill, the fallback when the backend gives up) and a classical task.

The QAOA oracles (a NumPy statevector, tests/truth.py) are test_qaoa.py's."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
from test_kinds import KNOWN, contract_record
from test_qaoa import (
    BACKEND,
    NO_TERMS,
    Record,
    assert_exact_answer,
    expectation_cases,
    formulated,
    numpy_qaoa_energy,
    same_graph_maxcuts,
    true_qaoa_expectation,
)
from truth import brute_force, feasible
from truth import objective as true_objective

from pipeline.backends import CallPolicy
from pipeline.config import PriceSettings, RetrySettings
from pipeline.formulation import formulate
from pipeline.model import spec_from_record
from pipeline.qaoa.evaluators import BatchProblem, normalised_weights
from pipeline.qaoa.shapes import shape_of
from pipeline.qaoa.templates import PackedTemplate, compile_template
from pipeline.tasks import ClassicalTask, QuantumChunkTask, WorkItem
from pipeline.workers.classical import run_classical_task
from pipeline.workers.quantum import run_quantum_chunk


# --- the quantum chunk (pipeline/workers/quantum.py) ------------------------------------------
def chunk_task(
    specs: list[Record], reps: int, spec: str = "aer", policy: CallPolicy | None = None
) -> QuantumChunkTask:
    formulations = [formulated(s) for s in specs]
    template = compile_template(shape_of(formulations[0].ising, reps, "aer"), BACKEND, "test")
    return QuantumChunkTask(
        template=PackedTemplate.pack(template),
        problems=tuple(WorkItem(f"p{i}", f, 128) for i, f in enumerate(formulations)),
        backend_spec=spec,
        max_qubits=16,
        max_iterations=20,
        seed=7,
        policy=policy or CallPolicy(),
    )


def test_a_chunk_answers_with_angles_that_reproduce_its_expectation() -> None:
    rng = np.random.default_rng(5)
    graph = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 3)]
    specs = same_graph_maxcuts(6, graph, 5, rng, weights="float", span=(0.5, 2))
    task = chunk_task(specs, reps=2)
    result = run_quantum_chunk(task)
    assert result.fallback is None and result.problem_ids == ("p0", "p1", "p2", "p3", "p4")
    assert [a.problem_id for a in result.answers] == list(result.problem_ids)
    # On the fast path the shots come from the exact final state: no backend call at all.
    assert result.attempts == 0 and not result.job_ids
    assert result.worker.endswith(f":{os.getpid()}")
    problems = [BatchProblem(w.problem_id, w.formulation, w.shots) for w in task.problems]
    # The angles act on the weights normalised to RMS 1, as the engine ran them.
    scale = normalised_weights(task.template.unpack(), problems)[0]
    for answer, item, s in zip(result.answers, task.problems, scale, strict=True):
        assert answer.reps == 2 and len(answer.angles) == 4 and answer.evaluations > 0
        gammas, betas = np.array(answer.angles[:2]), np.array(answer.angles[2:])
        ising = item.formulation.ising
        exact = ising.sign * (
            ising.constant + s * numpy_qaoa_energy(item.formulation, gammas, betas, s)
        )
        assert answer.expected_objective == pytest.approx(exact, abs=1e-8)
        assert answer.provider_job_id is None and not answer.proven_optimal  # no backend job


def test_a_fast_path_chunk_bills_its_simulation_beside_its_backend_calls() -> None:
    rng = np.random.default_rng(5)
    graph = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 3)]
    specs = same_graph_maxcuts(6, graph, 6, rng, weights="float", span=(0.5, 2))
    price = 0.5  # USD per core-second, so the bill is easy to check
    policy = CallPolicy(prices=PriceSettings(cpu_usd_per_core_second=price))
    result = run_quantum_chunk(chunk_task(specs, 2, policy=policy))
    assert result.fallback is None and len(result.answers) == 6
    # Time and bill are split evenly among the problems.
    assert sum(a.cost_usd for a in result.answers) == pytest.approx(result.cost_usd)
    assert sum(a.seconds for a in result.answers) == pytest.approx(result.seconds)
    assert len({a.cost_usd for a in result.answers}) == 1
    # Nothing reached Aer: the bill is the core-seconds the fast simulator held, shots
    # included, which is most of the chunk's time and never more than all of it.
    assert result.attempts == 0
    assert 0.3 * price * result.seconds < result.cost_usd < price * result.seconds


@pytest.mark.parametrize(
    ("spec", "policy", "code"),
    [
        ("faulty:aer?permanent=1&seed=31", CallPolicy(), "backend_permanent"),
        (
            "faulty:aer?transient=1&seed=34",
            CallPolicy(
                retry=RetrySettings(max_attempts=2, backoff_initial_s=0.001, breaker_threshold=9)
            ),
            "backend_transient",
        ),
        (
            "faulty:aer?outage=1&seed=33",
            CallPolicy(retry=RetrySettings(max_attempts=2, backoff_initial_s=0.001)),
            "backend_unavailable",
        ),
        ("aer", CallPolicy(budget_usd=0.0), "budget_exhausted"),
        ("aer", CallPolicy(deadline_at=0.0), "deadline_exceeded"),
    ],
)
def test_a_chunk_whose_backend_gives_up_returns_the_reason_and_the_bill(
    spec: str, policy: CallPolicy, code: str
) -> None:
    specs = same_graph_maxcuts(4, [(0, 1), (1, 2), (2, 3)], 3, weights=1.0)
    result = run_quantum_chunk(chunk_task(specs, 1, spec, policy))
    assert result.answers == () and result.fallback is not None
    assert result.fallback.code == code, result.fallback
    assert result.problem_ids == ("p0", "p1", "p2")
    assert result.attempts == result.failures >= len(result.job_ids)
    assert (result.cost_usd > 0) == bool(result.job_ids)  # jobs that ran are billed


def test_a_fake_provider_is_evaluated_through_its_jobs() -> None:
    specs = same_graph_maxcuts(4, [(0, 1), (1, 2), (2, 3)], 2, weights=1.0)
    fast = run_quantum_chunk(chunk_task(specs, 1, "aer"))
    faked = run_quantum_chunk(chunk_task(specs, 1, "faulty:aer"))
    assert fast.attempts == 0  # exact: not even a sampling call
    assert faked.attempts >= 3  # grid, Newton steps and sampling, each a job
    for a, b in zip(fast.answers, faked.answers, strict=True):
        assert a.expected_objective == pytest.approx(b.expected_objective, abs=1e-6)


@pytest.mark.parametrize("name", list(NO_TERMS))
def test_a_chunk_of_problems_with_no_cost_terms_completes_on_its_quantum_route(name: str) -> None:
    record = NO_TERMS[name]
    result = run_quantum_chunk(chunk_task([record, record], reps=1))
    assert result.fallback is None, result.fallback
    assert [a.problem_id for a in result.answers] == ["p0", "p1"]
    for answer in result.answers:
        assert answer.feasible
        assert_exact_answer(record, answer.solution, answer.objective)
        exact = true_qaoa_expectation(record, answer.angles[:1], answer.angles[1:])
        assert answer.expected_objective == pytest.approx(exact, abs=1e-9)


def test_expected_objective_of_a_chunk_is_in_the_problems_units() -> None:
    records = expectation_cases()["portfolio"]
    result = run_quantum_chunk(chunk_task(records, reps=1))
    assert result.fallback is None
    for record, answer in zip(records, result.answers, strict=True):
        exact = true_qaoa_expectation(record, answer.angles[:1], answer.angles[1:])
        assert answer.expected_objective == pytest.approx(exact, abs=1e-9)


# --- the classical task (pipeline/workers/classical.py) --------------------------------------
@pytest.mark.parametrize("name", sorted(KNOWN))
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("enumerate_max", "status"), [(0, "OPTIMAL"), (12, "ENUMERATED")])
def test_classical_task_answers_the_brute_force_optimum(
    name: str, seed: int, enumerate_max: int, status: str
) -> None:
    record = contract_record(name, 3 + 3 * seed, 100 + seed)  # 3, 6 and 9 variables
    task = ClassicalTask(
        problem_id=f"p-{name}-{seed}",
        formulation=formulate(spec_from_record(record)),
        time_limit_s=10.0,
        workers=1,
        seed=seed,
        enumerate_max_variables=enumerate_max,
    )
    result = run_classical_task(task)
    optimum = brute_force(record)
    assert result.problem_ids == (task.problem_id,)
    assert result.worker == f"{socket.gethostname()}:{os.getpid()}"
    assert result.fallback is None and result.cost_usd == 0.0
    (answer,) = result.answers
    assert answer.problem_id == task.problem_id
    assert answer.objective == pytest.approx(optimum, abs=1e-9)
    assert answer.objective == pytest.approx(true_objective(record, answer.solution), abs=1e-9)
    assert answer.feasible and feasible(record, answer.solution)
    assert answer.proven_optimal and answer.solver_status == status
    assert answer.bound == pytest.approx(optimum, abs=1e-9)
    assert answer.cost_usd == 0.0
    assert 0 < answer.seconds <= result.seconds
