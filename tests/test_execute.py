"""The run's loop on its own terms: claims planned (those past their attempts set apart),
waves claimed while the last is out, every batch committed once and counted once.

Real intake (SQLite), real results folder, in-process compute: a run small enough to watch
every wave. Answers are checked against brute force.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import truth
from factories import problem

from batching import plan_claims
from flows.deps import open_deps
from flows.run import run_once
from pipeline.backends import get_backend
from pipeline.config_sources import load_settings
from pipeline.intake import ClaimedProblem
from pipeline.model import spec_from_record
from pipeline.results import query
from pipeline.submit import submit_files


def claimed(index: int, record: dict, attempts: int) -> ClaimedProblem:
    spec = spec_from_record(record)
    now = datetime(2026, 1, 1)
    return ClaimedProblem(f"p{index}", f"k{index}", spec.model_dump_json(), "h", attempts, now, now)


def test_claims_past_their_attempts_are_set_apart_and_the_rest_planned() -> None:
    settings = load_settings(overrides={"intake.max_attempts": 2})
    backend = get_backend("aer", settings.quantum.max_qubits)
    claims = [claimed(i, problem("maxcut", 5, seed=i), attempts=1 + i % 3) for i in range(6)]
    exhausted, planned = plan_claims(claims, backend, settings)
    assert sorted(c.id for c in exhausted) == ["p2", "p5"]  # 3 attempts, limit 2
    assert sorted(p.problem_id for b in planned for p in b.problems) == ["p0", "p1", "p3", "p4"]


def test_a_run_claims_in_waves_and_commits_and_counts_each_batch_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waves of 4 problems (claim_limit) in batches of 2: 13 problems take four waves."""
    settings = load_settings(
        tmp_path / "home",
        overrides={
            "intake.claim_limit": 4,
            "quantum.max_batch_size": 2,
            "quantum.max_iterations": 3,
            "dask.inline_below_s": 1e9,
        },
    )
    records = [problem("maxcut", 5, seed=i, graph="ring", key=f"w{i}") for i in range(10)]
    records += [problem("maxcut", 6, seed=i, route="classical", key=f"c{i}") for i in range(3)]
    source = tmp_path / "problems.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    submitted = submit_files(settings, [source]).submitted
    by_id = {s.outcome.id: r for s, r in zip(submitted, records, strict=True)}
    notes: list[str] = []
    with open_deps(settings) as deps:
        monkeypatch.setattr(deps.progress, "note", notes.append, raising=False)
        summary = run_once(deps)
    assert summary.problems == 13 and summary.completed == 13
    assert sum("claimed 4 more problems" in n or "claimed 1 more" in n for n in notes) == 3
    rows = query(settings.results_location, "SELECT * FROM problems").to_pylist()
    assert Counter(r["problem_id"] for r in rows) == dict.fromkeys(by_id, 1)
    for row in rows:
        assert row["objective"] == pytest.approx(truth.brute_force(by_id[row["problem_id"]]))
    batches = query(settings.results_location, "SELECT * FROM batches").to_pylist()
    assert summary.batches == len(batches)
    assert summary.quantum_batches + summary.classical_batches == len(batches)
    assert sum(b["size"] for b in batches) == 13
    assert summary.t_plan_s > 0 and summary.t_execute_s > 0
    assert summary.t_total_s >= summary.t_plan_s + summary.t_execute_s
    assert summary.cost_usd == pytest.approx(sum(r["cost_usd"] for r in rows), abs=1e-6)
