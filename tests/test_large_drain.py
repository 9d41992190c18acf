"""A drain of thousands of small problems in one run, checked against independent truth.

Batches are sized by expected compute (batching/batch_sizes.py), so small problems travel in
batches of up to a thousand, several waves a run: whatever the sizing, every problem gets
exactly one row, its objective is its solution's (recomputed here, tests/truth.py), a
classical answer proven optimal is the brute-force optimum, and every row says how it ended
and how long it took.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import truth
from factories import problem

from flows.deps import open_deps
from flows.run import run_once
from pipeline.config_sources import load_settings
from pipeline.results import query
from pipeline.submit import submit_files

COUNT = 2400


def records() -> list[dict[str, object]]:
    """Half MaxCut for the quantum route (4-6 nodes), a quarter QUBO and a quarter portfolio
    for the classical one (4-7 variables); each with a key to find it by."""
    found: list[dict[str, object]] = []
    for i in range(COUNT):
        if i % 2 == 0:
            record = problem("maxcut", 4 + i % 3, seed=i, nonempty=True, route="quantum", shots=64)
        elif i % 4 == 1:
            record = problem("qubo", 4 + i % 4, seed=i, route="classical")
        else:
            record = problem("portfolio", 4 + i % 4, seed=i, route="classical")
        found.append(record | {"key": f"d{i}"})
    return found


def test_a_drain_of_thousands_answers_each_problem_once_and_truly(tmp_path: Path) -> None:
    submitted = records()
    source = tmp_path / "problems.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in submitted))
    settings = load_settings(
        tmp_path / "home",
        overrides={"quantum.max_iterations": 5, "quantum.default_reps": 1, "dask.n_workers": 1},
    )
    submit_files(settings, [source])
    with open_deps(settings) as deps:
        summary = run_once(deps)
    assert (summary.problems, summary.completed) == (COUNT, COUNT), summary
    rows = query(settings.results_location, "SELECT * FROM problems").to_pylist()
    assert len(rows) == COUNT and len({r["problem_id"] for r in rows}) == COUNT
    by_key = {r["key"]: r for r in submitted}
    assert Counter(r["key"] for r in rows) == Counter(list(by_key))
    batches = query(settings.results_location, "SELECT * FROM batches").to_pylist()
    sizes = Counter(r["batch_id"] for r in rows)
    for route in ("quantum", "classical"):  # sized by compute: far past the old fixed 64
        assert max(b["size"] for b in batches if b["route"] == route) > 64, route
    assert sum(b["size"] for b in batches) == COUNT and {b["batch_id"] for b in batches} == set(
        sizes
    )
    for row in rows:
        record = by_key[row["key"]]
        assert row["status"] == "completed" and row["route"] == record["route"], row
        assert len(row["solution"]) == truth.variables(record)
        assert math.isclose(
            row["objective"], truth.objective(record, row["solution"]), abs_tol=1e-9
        )
        assert row["feasible"] == truth.feasible(record, row["solution"])
        assert row["t_execute_s"] > 0 and row["completed_at"] is not None
        if row["route"] == "classical":
            assert row["proven_optimal"]
            assert math.isclose(row["objective"], truth.brute_force(record), abs_tol=1e-9)
        else:
            assert row["reference_objective"] == truth.brute_force(record)
            assert row["evaluations"] >= 0 and row["expected_objective"] is not None
