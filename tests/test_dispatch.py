"""Dispatch on its own: routed batches out as tasks (cut as routing sized them), each task
role's result handled by its own handler, every batch back once its last task is in.

Tasks run for real on an in-process compute (the run's own, for small runs); the faulty
backend is the product's fault-injecting wrapper. Answers are checked against brute force.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import truth
from factories import planned, problem

import flows.dispatch
from batching import Batch, FinishedBatch, plan_batches, route_batches
from flows.compiler import TemplateCompiler
from flows.compute import InlineCompute
from flows.dispatch import Dispatcher
from pipeline.backends import get_backend
from pipeline.config import Settings
from pipeline.config_sources import load_settings
from pipeline.fallback import FallbackCode
from pipeline.intake import Move
from pipeline.qaoa.templates import TemplateStore
from pipeline.vocabulary import Route, TaskRole


@pytest.fixture
def compute() -> Iterator[InlineCompute]:
    inline = InlineCompute()
    yield inline
    inline.close()


def dispatch_all(
    batches: list[Batch], settings: Settings, backend_spec: str, compute: InlineCompute, tmp
) -> tuple[list[FinishedBatch], list[Move]]:
    backend = get_backend(backend_spec, settings.quantum.max_qubits)
    moves: list[Move] = []
    compiler = TemplateCompiler(TemplateStore(tmp / "artifacts"), backend, compute.thread)
    dispatcher = Dispatcher(compute, settings, backend, time.time(), record=moves.extend)
    compiler.add(batches)
    dispatcher.dispatch(batches, compiler)
    finished = list(dispatcher.finished())
    compiler.close()
    return finished, moves


def routed(records: list[dict], settings: Settings, backend_spec: str = "aer") -> list[Batch]:
    backend = get_backend(backend_spec, settings.quantum.max_qubits)
    problems = [planned(i, r, reps=1, shots=64) for i, r in enumerate(records)]
    batches = plan_batches(problems, backend.name, backend.target.why_not, 8)
    return route_batches(
        batches, backend, settings, datetime.now(UTC), compiled=lambda _: True, workers=2
    )


def test_a_classical_batch_goes_out_as_one_task_of_small_problems_and_one_per_large(
    compute: InlineCompute, tmp_path
) -> None:
    settings = load_settings(tmp_path, overrides={"classical.time_limit_s": 2.0})
    small = [problem("maxcut", 6, seed=i, route="classical") for i in range(3)]
    large = [problem("maxcut", 14, seed=10 + i, route="classical") for i in range(2)]
    [batch] = routed(small + large, settings)
    assert batch.route == Route.CLASSICAL
    [finished], moves = dispatch_all([batch], settings, "aer", compute, tmp_path)
    assert finished.chunks == 3  # the three small ones together, each large one alone
    assert [m.states for m in moves] == [("submitted", "running")]
    answers = {a.problem_id: a for r in finished.results for a in r.answers}
    records = dict(zip((p.problem_id for p in batch.problems), small + large, strict=True))
    for pid, record in records.items():
        assert answers[pid].objective == pytest.approx(truth.brute_force(record))


def test_a_quantum_batch_is_cut_as_routing_sized_it_and_references_are_sent_beside(
    compute: InlineCompute, tmp_path
) -> None:
    """Problems above the exhaustive-reference size get a CP-SAT reference task beside."""
    settings = load_settings(
        tmp_path,
        overrides={
            "quantum.max_iterations": 3,
            "classical.reference_exhaustive_max_variables": 6,
            "classical.reference_time_limit_s": 1.0,
        },
    )
    records = [problem("maxcut", 8, seed=i, graph="ring") for i in range(8)]
    [batch] = routed(records, settings)
    assert batch.route == Route.QUANTUM and batch.chunks >= 1
    [finished], moves = dispatch_all([batch], settings, "aer", compute, tmp_path)
    assert finished.chunks == batch.chunks
    assert [m.states for m in moves] == [("compiled", "submitted", "running")]
    assert sorted(finished.references) == sorted(p.problem_id for p in batch.problems)
    for p, record in zip(batch.problems, records, strict=True):
        assert finished.references[p.problem_id].objective == pytest.approx(
            truth.brute_force(record)
        )
    answered = [a for r in finished.results for a in r.answers]
    assert len(answered) == len(records) and not finished.fallbacks


def test_a_quantum_chunk_that_raises_falls_back_to_cpsat_labelled(
    compute: InlineCompute, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quantum handler is not reached: the failure handler sends each problem on as a
    fallback task, whose CP-SAT answers come back in ``fallback_results``."""

    def lost_worker(task: object) -> object:
        raise MemoryError("the worker ran out of memory")

    monkeypatch.setattr(flows.dispatch, "run_quantum_chunk", lost_worker)
    settings = load_settings(tmp_path)
    records = [problem("maxcut", 6, seed=i, graph="ring") for i in range(4)]
    [batch] = routed(records, settings)
    [finished], _ = dispatch_all([batch], settings, "aer", compute, tmp_path)
    ids = sorted(p.problem_id for p in batch.problems)
    assert sorted(finished.fallbacks) == ids
    assert {f.code for f in finished.fallbacks.values()} == {FallbackCode.EXECUTION_ERROR}
    assert "MemoryError" in next(iter(finished.fallbacks.values())).message
    fallback = {a.problem_id: a for r in finished.fallback_results for a in r.answers}
    assert sorted(fallback) == ids and not finished.errors
    for p, record in zip(batch.problems, records, strict=True):
        assert fallback[p.problem_id].objective == pytest.approx(truth.brute_force(record))


def test_a_backend_that_gives_up_sends_its_chunk_to_cpsat_with_its_code(
    compute: InlineCompute, tmp_path
) -> None:
    """The product's faulty wrapper refuses every call permanently: the quantum handler
    reads the chunk's fallback and sends its problems on."""
    settings = load_settings(tmp_path)
    records = [problem("maxcut", 5, seed=i, graph="ring") for i in range(3)]
    [batch] = routed(records, settings, "faulty:aer?permanent=1")
    [finished], _ = dispatch_all([batch], settings, "faulty:aer?permanent=1", compute, tmp_path)
    assert {f.code for f in finished.fallbacks.values()} == {FallbackCode.BACKEND_PERMANENT}
    assert len(finished.fallback_results) == len(records)


def test_every_role_has_a_handler() -> None:
    """A role without one would raise KeyError when its first result came back."""
    dispatcher = Dispatcher.__new__(Dispatcher)
    assert set(dispatcher._handlers) == set(TaskRole)
