"""Row assembly on its own: a finished batch's results become one row per answered problem,
saying which path answered it and why, with its cost and timings.

Built from plain records (what dispatch hands back), so each rule of the row is checked
without running anything.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from factories import planned, problem

from batching import Batch, FinishedBatch, TemplateUse
from pipeline.config_sources import load_settings
from pipeline.fallback import Fallback, FallbackCode
from pipeline.qaoa.shapes import shape_of
from pipeline.results.assemble import RowContext, batch_row, batch_rows
from pipeline.tasks import Answer, ChunkResult
from pipeline.vocabulary import Route, SolverPath, State

MAX_ATTEMPTS = 3


def context() -> RowContext:
    settings = load_settings()
    return RowContext(
        "r-1",
        "aer",
        SolverPath.SIMULATOR,
        "inline",
        datetime.now(UTC),
        MAX_ATTEMPTS,
        settings.classical,
        settings.prices,
    )


def answer(pid: str, objective: float, seconds: float = 0.5, cost: float = 0.0) -> Answer:
    return Answer(pid, "01010", objective, True, False, seconds, cost, expected_objective=3.0)


def quantum_batch(attempts: int = 1) -> Batch:
    """Four 5-node rings in one quantum batch; p3 claimed ``attempts`` times."""
    problems = tuple(
        planned(i, problem("maxcut", 5, seed=i, graph="ring"), reps=1) for i in range(4)
    )
    problems = (*problems[:3], dataclasses.replace(problems[3], attempts=attempts))
    problems = tuple(dataclasses.replace(p, known_instance=f"known {p.key}") for p in problems)
    shape = shape_of(problems[0].formulation.ising, 1, "aer")
    return Batch("b-1", Route.QUANTUM, shape, problems, "fits aer", chunks=2)


def finished(batch: Batch, errors: dict[str, Fallback] | None = None) -> FinishedBatch:
    """p0, p1 answered on the quantum route; p2's chunk gave up and CP-SAT answered it;
    p3's fallback task raised (or is in ``errors``)."""
    gave_up = Fallback(FallbackCode.BACKEND_TRANSIENT, "the backend kept timing out")
    results = (
        ChunkResult(("p0", "p1"), (answer("p0", 4.0), answer("p1", 4.0)), "w", 2.0, 0.02),
        ChunkResult(("p2", "p3"), (), "w", 3.0, 0.06, attempts=4, fallback=gave_up),
    )
    fallback = (ChunkResult(("p2",), (answer("p2", 5.0, seconds=0.25),), "w", 0.25),)
    return FinishedBatch(
        batch=batch,
        template=TemplateUse("key", first=True, compiled=True, compile_s=1.5),
        chunks=2,
        results=results,
        fallback_results=fallback,
        fallbacks={"p2": gave_up, "p3": gave_up},
        errors=errors or {},
        execute_s=4.0,
    )


def test_each_problem_says_which_path_answered_it_and_why() -> None:
    batch = quantum_batch()
    assert batch.shape is not None
    rows = {r.problem_id: r for r in batch_rows(finished(batch), context())}
    assert sorted(rows) == ["p0", "p1", "p2"]  # p3 has attempts left: back to the queue
    for pid in ("p0", "p1"):
        row = rows[pid]
        assert (row.status, row.route, row.solver_path) == (
            State.COMPLETED,
            Route.QUANTUM,
            SolverPath.SIMULATOR,
        )
        assert row.t_execute_s == 2.0 and row.t_compile_s == 1.5 and row.expected_objective == 3.0
        assert row.reference_solver == "exhaustive"  # 5 variables: judged by enumeration
        assert row.reference_note == f"known {row.key}" and row.shape_key == batch.shape.label
    fell = rows["p2"]
    assert (fell.status, fell.route, fell.fallback_code) == (
        State.DEGRADED,
        Route.CLASSICAL,
        FallbackCode.BACKEND_TRANSIENT,
    )
    cpu = load_settings().prices.cpu_usd_per_core_second
    # Half the failed chunk's bill and its time, then CP-SAT's own time and core-seconds.
    assert fell.cost_usd == pytest.approx(0.03 + 0.25 * cpu)
    assert fell.t_execute_s == pytest.approx(3.0 + 0.25)
    assert (
        fell.reference_note == "known k2"
        and fell.shape_key == shape_of(batch.problems[2].formulation.ising, 0, "cpsat").label
    )


def test_a_problem_out_of_attempts_ends_failed_with_the_reason() -> None:
    lost = Fallback(FallbackCode.EXECUTION_ERROR, "fallback execution failed: MemoryError")
    done = finished(quantum_batch(attempts=MAX_ATTEMPTS), errors={"p3": lost})
    rows = {r.problem_id: r for r in batch_rows(done, context())}
    failed = rows["p3"]
    assert (failed.status, failed.fallback_code) == (State.FAILED, FallbackCode.EXECUTION_ERROR)
    assert failed.fallback_reason == f"{lost.message} (attempt 3 of {MAX_ATTEMPTS})"
    assert failed.solution is None and failed.objective is None


def test_the_batch_row_adds_up_its_rows_and_its_backend_calls() -> None:
    done = finished(quantum_batch())
    rows = batch_rows(done, context())
    row = batch_row(done, context(), rows, post_s=0.1)
    assert (row.route, row.solver_path, row.size, row.chunks) == (
        Route.QUANTUM,
        SolverPath.SIMULATOR,
        3,
        2,
    )
    assert row.backend_attempts == 4 and row.quantum_cost_usd == pytest.approx(0.08)
    assert row.cost_usd == pytest.approx(sum(r.cost_usd for r in rows))
    assert row.templates_compiled == 1 and row.t_compile_s == 1.5
    assert row.fallback_reason == "the backend kept timing out"
