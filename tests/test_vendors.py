"""The same problems on every vendor: Qiskit Aer, Amazon Braket's local simulators and IBM's
runtime (its local testing mode), through `run_once`, switching nothing but `[quantum] backend`.

Every answer is checked against independent truth (tests/truth.py): its objective recomputed
from its bitstring, never better than the brute-force optimum. On the ideal simulators the
stored expectation is checked against a NumPy statevector at the row's own angles (exactly
where the engine computes it, within shot noise where it is a mean of sampled shots: a
portfolio's, over its feasible outcomes). Braket's simulators take no seed, so nothing here
compares their shots with Aer's bit for bit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from factories import problem
from test_qaoa import outcome_table, qaoa_probabilities
from truth import brute_force, feasible, objective, sense

from flows.deps import open_deps
from flows.run import run_once
from pipeline.config_sources import load_settings
from pipeline.results import query
from pipeline.submit import submit_files

IDEAL = ("aer", "braket-local")
NOISY = ("ibm:fake_manila", "braket-local:dm")  # problems of at most 5 variables
SHOTS = 2048

SMALL = [
    problem("maxcut", 4, seed=1, nonempty=True, key="maxcut-4", route="quantum"),
    problem("maxcut", 5, seed=2, nonempty=True, key="maxcut-5", route="quantum"),
    problem("qubo", 4, seed=3, key="qubo-4", route="quantum"),
    problem("qubo", 5, seed=4, key="qubo-5", route="quantum"),
    problem("portfolio", 5, seed=5, key="portfolio-5", route="quantum"),
]
TINY = [  # for the noisy simulators, where every evaluation is a density matrix's shots
    problem("maxcut", 3, seed=9, nonempty=True, key="maxcut-3", route="quantum"),
    problem("qubo", 3, seed=10, key="qubo-3", route="quantum"),
    problem("portfolio", 3, seed=11, key="portfolio-3", route="quantum"),
]
LARGER = [
    problem("maxcut", 7, seed=6, nonempty=True, key="maxcut-7", route="quantum"),
    problem("qubo", 6, seed=7, key="qubo-6", route="quantum"),
    problem("portfolio", 6, seed=8, key="portfolio-6", route="quantum"),
]


def answers(home: Path, backend: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records' rows after one run on ``backend``; every other setting the same."""
    settings = load_settings(
        home,
        overrides={
            "quantum.backend": backend,
            "quantum.default_shots": SHOTS,
            "quantum.max_iterations": 8,  # correctness, not quality: a short optimisation
            "quantum.default_reps": 1,
            "dask.inline_below_s": 1e9,
        },
    )
    source = home / "problems.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    submit_files(settings, [source])
    with open_deps(settings) as deps:
        summary = run_once(deps)
    rows = query(settings.results_location, "SELECT * FROM problems ORDER BY key").to_pylist()
    why = [(r["key"], r["status"], r["fallback_code"], r["fallback_reason"]) for r in rows]
    assert summary.completed == len(records), (summary, why)
    return rows


def check_against_truth(
    records: list[dict[str, Any]], rows: list[dict[str, Any]], backend: str
) -> None:
    by_key = {r["key"]: r for r in records}
    assert sorted(by_key) == [row["key"] for row in rows]
    for row in rows:
        record = by_key[row["key"]]
        assert row["route"] == "quantum" and row["backend"] == backend, row["route_reason"]
        assert feasible(record, row["solution"])
        assert row["objective"] == pytest.approx(objective(record, row["solution"]), abs=1e-9)
        optimum = brute_force(record)
        better = (
            row["objective"] > optimum if sense(record) == "max" else row["objective"] < optimum
        )
        assert not better or math.isclose(row["objective"], optimum, abs_tol=1e-9)


def check_ideal_expectation(record: dict[str, Any], row: dict[str, Any]) -> None:
    """The stored expectation against the statevector's at the row's own angles."""
    angles = np.asarray(row["angles"])
    gammas, betas = np.split(angles, 2)
    values, allowed = outcome_table(record)
    probability = qaoa_probabilities(record, gammas, betas) * allowed
    kept = probability.sum()
    mean = float((probability * values).sum() / kept)
    if record["kind"] != "portfolio":  # the engine's exact value
        assert row["expected_objective"] == pytest.approx(mean, rel=1e-6, abs=1e-9)
        return
    spread = math.sqrt(float((probability * (values - mean) ** 2).sum() / kept))
    bound = 5 * spread / math.sqrt(SHOTS * kept)  # a mean of the feasible shots
    assert abs(row["expected_objective"] - mean) <= bound + 1e-9


@pytest.mark.parametrize(
    ("backend", "records"),
    [*((b, SMALL) for b in IDEAL), *((b, TINY) for b in IDEAL), *((b, TINY) for b in NOISY)],
)
def test_the_same_small_problems_on_every_vendor(
    tmp_path: Path, backend: str, records: list[dict[str, Any]]
) -> None:
    rows = answers(tmp_path, backend, records)
    check_against_truth(records, rows, backend)
    by_key = {r["key"]: r for r in records}
    for row in rows:
        assert row["expected_objective"] is not None
        if backend in IDEAL:
            check_ideal_expectation(by_key[row["key"]], row)


@pytest.mark.parametrize("backend", IDEAL)
def test_larger_problems_on_the_ideal_simulators_of_both_vendors(
    tmp_path: Path, backend: str
) -> None:
    rows = answers(tmp_path, backend, LARGER)
    check_against_truth(LARGER, rows, backend)
    by_key = {r["key"]: r for r in LARGER}
    for row in rows:
        check_ideal_expectation(by_key[row["key"]], row)


def test_braket_local_answers_come_from_braket_tasks(tmp_path: Path) -> None:
    """braket-local's shots are Braket's own: each quantum batch names its program-set tasks."""
    answers(tmp_path, "braket-local", SMALL)
    settings = load_settings(tmp_path)
    batches = query(
        settings.results_location, "SELECT * FROM batches WHERE route = 'quantum'"
    ).to_pylist()
    assert batches and all(b["jobs"] >= 1 for b in batches)
    for batch in batches:
        ids = batch["provider_job_ids"].split(",")
        assert len(ids) == batch["jobs"] and all(len(i) == 36 for i in ids)  # Braket task UUIDs
