"""The run core itself: waves of claims, what a run summary says."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.deps import open_deps
from flows.run import run_once
from pipeline.config_sources import load_settings
from pipeline.intake import CLAIMED, IntakeStore, problem_events
from pipeline.results import query
from pipeline.submit import submit_files


def test_a_run_claims_in_waves_and_answers_everything(tmp_path: Path) -> None:
    """With one worker and batches of two, a wave is four problems: the run claims twenty
    in several waves, never holding more than a wave and a half at once."""
    settings = load_settings(
        tmp_path / "home",
        overrides={
            "quantum.max_batch_size": 2,
            "dask.n_workers": 1,
            "dask.inline_below_s": 1e9,
            "quantum.max_iterations": 3,
            "classical.time_limit_s": 2.0,
        },
    )
    source = tmp_path / "p.jsonl"
    records = [
        {"kind": "maxcut", "n": 4 + i % 2, "edges": [[0, 1, 1 + i], [1, 2, 2], [2, 3, 1]]}
        for i in range(20)
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    submit_files(settings, [source])
    with open_deps(settings) as deps:
        summary = run_once(deps)
    assert (summary.problems, summary.completed, summary.released) == (20, 20, 0)
    store = IntakeStore.open(settings.database_url)
    try:
        with store.engine.connect() as connection:
            claims = connection.execute(
                sa.select(problem_events.c.at).where(problem_events.c.state == CLAIMED)
            ).all()
    finally:
        store.close()
    waves = Counter(row.at for row in claims)
    assert sum(waves.values()) == 20 and len(waves) >= 5, waves
    assert max(waves.values()) <= 4, waves


def test_two_homes_write_one_shared_result_dataset(tmp_path: Path) -> None:
    """Hosts with homes of their own and one results folder (a shared mount): one dataset,
    every answer once, readable from either home."""
    shared = tmp_path / "shared-results"
    ids: dict[str, list[str]] = {}
    for name in ("host-a", "host-b"):
        settings = load_settings(
            tmp_path / name, overrides={"results.url": f"file://{shared}", "dask.n_workers": 1}
        )
        source = tmp_path / f"{name}.jsonl"
        records = [
            {
                "kind": "maxcut",
                "n": 4,
                "edges": [[0, 1, i + 1], [1, 2, 1], [2, 3, 2]],
                "key": f"{name}-{i}",
            }
            for i in range(6)
        ]
        source.write_text("".join(json.dumps(r) + "\n" for r in records))
        ids[name] = [s.outcome.id for s in submit_files(settings, [source]).submitted]
        with open_deps(settings) as deps:
            assert run_once(deps).completed == 6
        assert not (tmp_path / name / "results").exists()  # nothing under the home itself
    rows = query(shared, "SELECT problem_id, key FROM problems").to_pylist()
    assert sorted(r["problem_id"] for r in rows) == sorted(ids["host-a"] + ids["host-b"])
    assert len(query(shared, "SELECT * FROM runs")) == 2


def test_a_task_that_raises_is_retried_and_fails_only_past_its_attempt_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A classical task lost to MemoryError (or a killed worker) is a transient failure: the
    problem goes back to the queue, and ends failed with the reason only past max_attempts."""
    import flows.dispatch

    settings = load_settings(
        tmp_path / "home", overrides={"intake.max_attempts": 2, "classical.time_limit_s": 2.0}
    )
    source = tmp_path / "p.json"
    record = {"kind": "maxcut", "n": 5, "edges": [[0, 1], [1, 2], [2, 3], [3, 4]]}
    source.write_text(json.dumps(record | {"route": "classical"}))
    [submitted] = submit_files(settings, [source]).submitted

    def out_of_memory(task: object) -> object:
        raise MemoryError("no room for the model")

    monkeypatch.setattr(flows.dispatch, "run_classical_chunk", out_of_memory)
    with open_deps(settings) as deps:
        first = run_once(deps)
    assert (first.problems, first.completed, first.failed, first.released) == (1, 0, 0, 1)
    assert query(settings.results_location, "SELECT * FROM problems").num_rows == 0
    with open_deps(settings) as deps:
        second = run_once(deps)
    assert (second.problems, second.failed, second.released) == (1, 1, 0)
    [row] = query(settings.results_location, "SELECT * FROM problems").to_pylist()
    assert row["problem_id"] == submitted.outcome.id and row["status"] == "failed"
    assert row["fallback_code"] == "execution_error" and row["attempts"] == 2
    assert "MemoryError" in row["fallback_reason"] and "attempt 2 of 2" in row["fallback_reason"]


def test_a_second_run_of_a_class_starts_from_the_library_and_costs_fewer_evaluations(
    tmp_path: Path,
) -> None:
    """Two graphs of one class (6 nodes, the same degree sequence, not regular): the first
    run scans the grid and writes the angles back; the second starts from them."""

    def problems(chords: list[list[int]], seed: int) -> list[dict[str, object]]:
        ring = [[i, (i + 1) % 6] for i in range(6)]
        return [
            {
                "kind": "maxcut",
                "n": 6,
                "edges": [[u, v, 1 + (seed + i * 7 + u * 3 + v) % 9] for u, v in ring + chords],
            }
            for i in range(8)
        ]

    settings = load_settings(tmp_path / "home", overrides={"dask.inline_below_s": 1e9})
    evaluations = []
    for name, chords in (("first", [[0, 3], [1, 4]]), ("second", [[1, 4], [2, 5]])):
        source = tmp_path / f"{name}.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in problems(chords, len(name))))
        submit_files(settings, [source])
        with open_deps(settings) as deps:
            summary = run_once(deps)
        rows = query(
            settings.results_location,
            "SELECT evaluations, expected_objective, reference_objective FROM problems "
            "WHERE run_id = ? AND route = 'quantum'",
            [summary.run_id],
        ).to_pylist()
        assert len(rows) == 8
        evaluations.append(sum(r["evaluations"] for r in rows) / len(rows))
        ratios = [r["expected_objective"] / r["reference_objective"] for r in rows]
        assert min(ratios) > 0.7  # the library's start costs no quality worth the name
    assert evaluations[1] < evaluations[0] / 2, evaluations
    library = runner_angles(settings)
    assert len(library) == 1 and library[0]["class"].startswith("maxcut/q6/")


def runner_angles(settings: object) -> list[dict[str, object]]:
    from typer.testing import CliRunner

    from flows.cli import app

    home = str(settings.home)  # type: ignore[attr-defined]
    result = CliRunner().invoke(app, ["angles", "--json", "--home", home])
    assert result.exit_code == 0, result.output
    found: list[dict[str, object]] = json.loads(result.stdout)
    return found


@pytest.mark.parametrize("objective", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("fallback", [None, "backend down"])
def test_an_answer_whose_objective_is_not_finite_is_written_failed(
    objective: float, fallback: str | None
) -> None:
    """The second line of defence behind validation: a NaN objective is never an answer."""
    from datetime import UTC, datetime

    from factories import planned

    from batching.batches import Batch, FinishedBatch
    from pipeline.fallback import Fallback, FallbackCode
    from pipeline.model import spec_from_record
    from pipeline.results.assemble import RowContext, batch_rows
    from pipeline.tasks import Answer, ChunkResult
    from pipeline.vocabulary import SolverPath

    spec = spec_from_record({"kind": "maxcut", "n": 3, "edges": [[0, 1], [1, 2]]})
    now = datetime(2026, 1, 1)
    problem = planned("p-1", spec, key="k", shots=64, at=now)
    finite = planned("p-2", spec, key="k2", shots=64, at=now)
    answers = (
        Answer("p-1", "010", objective, True, True, 0.1, 0.0),
        Answer("p-2", "010", 2.0, True, True, 0.1, 0.0),
    )
    why = {"p-1": Fallback(FallbackCode.EXECUTION_ERROR, fallback)} if fallback else {}
    finished = FinishedBatch(
        batch=Batch("b-1", "classical", None, (problem, finite), "test"),
        template=None,
        chunks=1,
        results=(ChunkResult(("p-1", "p-2"), answers, "w", 0.1),),
        fallback_results=(),
        fallbacks=why,
        errors={},
        execute_s=0.1,
    )
    settings = load_settings()
    context = RowContext(
        "r-1",
        "aer",
        SolverPath.SIMULATOR,
        "inline",
        datetime.now(UTC),
        settings.intake.max_attempts,
        settings.classical,
        settings.prices,
    )
    bad, good = batch_rows(finished, context)
    assert (bad.status, bad.fallback_code, bad.objective, bad.solution) == (
        "failed",
        FallbackCode.NON_FINITE_OBJECTIVE,
        None,
        None,
    )
    assert "not a finite number" in (bad.fallback_reason or "")
    assert fallback is None or fallback in (bad.fallback_reason or "")
    assert (good.status, good.objective) == ("completed", 2.0)
