"""Fault tests of a whole run: the fault wrapper around real Aer, real CP-SAT, real Dask.

Each test submits problems, runs the run core once on one shared LocalCluster, and
checks the Parquet it wrote. Faults
are seeded, latencies are milliseconds and backoffs short, so nothing depends on the
clock: a test's outcome follows from its fault rates and the retry bound.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import truth
from factories import problem, rng_of

from flows.compute import local_cluster
from flows.deps import open_deps
from flows.run import run_once
from pipeline.config import Settings
from pipeline.config_sources import load_settings
from pipeline.results import query
from pipeline.submit import submit_files

MAX_ATTEMPTS = 3
TOKEN = f"qh-test-token-{secrets.token_hex(8)}"
FAST_RETRIES = {
    "retry.max_attempts": MAX_ATTEMPTS,
    "retry.backoff_initial_s": 0.005,
    "retry.backoff_max_s": 0.02,
    "timeouts.submit_s": 5.0,
    "timeouts.execute_s": 30.0,
    "quantum.max_iterations": 4,
    "classical.time_limit_s": 5.0,
}


@pytest.fixture(scope="module")
def client() -> Iterator[str]:
    """One cluster for the module (its address); its workers see the token, as a
    deployment's would."""
    previous = os.environ.get("QISKIT_IBM_TOKEN")
    os.environ["QISKIT_IBM_TOKEN"] = TOKEN
    try:
        with local_cluster(2) as dask:
            yield str(dask.scheduler_info()["address"])
    finally:
        if previous is None:
            os.environ.pop("QISKIT_IBM_TOKEN", None)
        else:
            os.environ["QISKIT_IBM_TOKEN"] = previous


def problems(count: int, seed: int, **extra: Any) -> list[dict[str, Any]]:
    """MaxCut rings of 4 to 6 nodes weighted 1 to 5 (tests/factories.py): a few shapes,
    several problems each, no two the same (one content is one problem)."""
    rng = rng_of(seed)
    records = [
        problem("maxcut", 4 + index % 3, seed=rng, graph="ring", span=(1, 5), **extra)
        for index in range(count)
    ]
    assert len({json.dumps(r, sort_keys=True) for r in records}) == count
    return records


def run(
    home: Path, client: str, backend: str, records: list[dict[str, Any]], **overrides: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Settings]:
    """Submit ``records``, run once on the shared cluster; problem rows in submission order."""
    overrides = {**FAST_RETRIES, "quantum.backend": backend, "dask.address": client, **overrides}
    settings = load_settings(home, overrides=overrides)
    source = home / "problems.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    ids = [s.outcome.id for s in submit_files(settings, [source]).submitted]
    with open_deps(settings) as deps:
        run_once(deps)
    rows = {
        r["problem_id"]: r
        for r in query(settings.results_location, "SELECT * FROM problems").to_pylist()
    }
    batch_rows = query(settings.results_location, "SELECT * FROM batches").to_pylist()
    assert len(rows) == len(ids), "a problem has no row, or more than one"
    return [rows[i] for i in ids], batch_rows, settings


def assert_all_answered(rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
    """Every problem has an answer whose objective is that of its own solution; an answer is
    degraded exactly when it says why."""
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        assert row["status"] == ("degraded" if row["fallback_reason"] else "completed"), row
        assert row["solution"] is not None and row["feasible"]
        assert row["objective"] == pytest.approx(truth.objective(record, row["solution"]))


def test_transient_faults_every_problem_answered_attempts_bounded(home: Path, client: str) -> None:
    records = problems(12, seed=1)
    rows, batches, _ = run(home, client, "faulty:aer?transient=0.3&latency=5ms&seed=11", records)
    assert_all_answered(rows, records)
    quantum = [b for b in batches if b["route"] == "quantum"]
    assert quantum
    assert all(1 <= b["max_attempts_per_call"] <= MAX_ATTEMPTS for b in quantum)
    assert sum(b["backend_failures"] for b in quantum) > 0, "30 % faults and none seen"
    assert all(
        b["backend_attempts"] > b["backend_failures"] or b["fallback_reason"] for b in quantum
    )
    # Every attempt is billed, failed ones too, and every job the provider made is kept
    # (attempts refused at submission, 429 or 503 or a reset connection, made none).
    for batch in quantum:
        assert batch["quantum_cost_usd"] > 0
        assert 0 < batch["provider_job_ids"].count("faulty-") <= batch["backend_attempts"]
        assert batch["cost_usd"] >= batch["quantum_cost_usd"] * 0.999
    answered = [r for r in rows if r["route"] == "quantum"]
    assert answered and all(r["provider_job_id"].startswith("faulty-") for r in answered)


def test_outage_every_problem_answered_classically_and_labelled(home: Path, client: str) -> None:
    records = problems(8, seed=2)
    rows, batches, _ = run(home, client, "faulty:aer?outage=1&seed=12", records)
    assert_all_answered(rows, records)
    for row in rows:
        assert (row["route"], row["solver_path"], row["status"]) == (
            "classical",
            "classical",
            "degraded",
        )
        assert row["fallback_code"] == "backend_unavailable", row  # the 503s, or the breaker
    quantum = [b for b in batches if b["backend"] != "ortools-cpsat"]
    assert all(b["max_attempts_per_call"] <= MAX_ATTEMPTS for b in batches)
    assert all(b["fallback_reason"] for b in quantum)


def test_permanent_errors_are_not_retried(home: Path, client: str) -> None:
    records = problems(6, seed=3)
    rows, batches, _ = run(home, client, "faulty:aer?permanent=1&latency=1ms&seed=13", records)
    assert_all_answered(rows, records)
    assert all(r["status"] == "degraded" and "permanent" in r["fallback_reason"] for r in rows)
    for batch in batches:
        assert batch["backend_attempts"] == batch["chunks"], "a permanent error was retried"
        assert batch["max_attempts_per_call"] == 1
        assert batch["quantum_cost_usd"] > 0  # the failed attempt ran, and is billed


def test_budget_below_the_quantum_cost_goes_classical_with_the_reason(
    home: Path, client: str
) -> None:
    auto = problems(4, seed=4)
    forced = problems(3, seed=5, route="quantum")
    late = [
        {
            "kind": "maxcut",
            "n": 5,
            "edges": [[0, 1, 2], [1, 2, 3], [2, 3, 1], [3, 4, 2]],
            "deadline": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        }
    ]
    records = auto + forced + late
    rows, batches, _ = run(home, client, "aer", records, **{"budget.per_problem_usd": 1e-12})
    assert_all_answered(rows, records)
    assert all(r["route"] == "classical" for r in rows)
    degraded = [r for r in rows if r["status"] == "degraded"]
    assert len(degraded) == len(forced)
    assert all("budget" in r["fallback_reason"] for r in degraded)
    for batch in batches:
        assert batch["route"] == "classical"
        assert "budget" in batch["route_reason"] or "deadline" in batch["route_reason"]
        if batch["est_quantum_cost_usd"] is not None:
            assert batch["est_quantum_cost_usd"] / batch["size"] > batch["budget_problem_usd"]
            assert batch["backend_attempts"] == 0  # nothing was spent on the quantum backend
    assert any("deadline" in b["route_reason"] for b in batches)


def test_within_budget_auto_takes_quantum_and_records_the_numbers(home: Path, client: str) -> None:
    records = problems(6, seed=7)
    rows, batches, _ = run(home, client, "aer", records)
    assert all((r["route"], r["status"]) == ("quantum", "completed") for r in rows)
    for batch in batches:
        assert batch["est_quantum_feasible"] and batch["est_quantum_cost_usd"] > 0
        assert 0 < batch["cost_usd"] <= batch["budget_allotted_usd"]
        assert batch["est_quantum_latency_s"] >= batch["est_quantum_execute_s"]
        # Aer's ideal statevector is what the exact simulator computes: the shots are drawn
        # from it, so no job reaches Aer, and the bill is the simulation's core-seconds.
        assert batch["backend_attempts"] == 0 and batch["provider_job_ids"] is None


def test_ibm_runtime_local_mode_and_the_token_is_never_written(
    home: Path, client: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The IBM adapter's real code path (Batch mode, runtime primitives) on a fake device."""
    caplog.set_level("DEBUG")
    records = problems(1, seed=8)
    rows, batches, _ = run(
        home, client, "ibm:fake_manila", records, **{"quantum.max_iterations": 1}
    )
    assert_all_answered(rows, records)
    assert rows[0]["route"] == "quantum" and rows[0]["backend"] == "ibm:fake_manila"
    assert batches[0]["provider_job_ids"]
    assert TOKEN not in caplog.text
    for path in home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_real_ibm_credentials_are_loaded_offline_and_the_token_is_never_written(
    tmp_path: Path,
) -> None:
    """The credential path of a real device (ibm:ibm_torino): the token reaches the runtime's
    client, the connection fails (no network here), and the token is in no output, log line,
    Parquet value or file of the home."""
    home = tmp_path / "home"
    problems_file = tmp_path / "p.jsonl"
    problems_file.write_text(json.dumps(problems(1, seed=9)[0]) + "\n")
    qhopper = str(Path(sys.executable).parent / "qhopper")
    env = {**os.environ, "QISKIT_IBM_TOKEN": TOKEN, "QHOPPER_HOME": str(home)}
    subprocess.run([qhopper, "submit", str(problems_file)], env=env, check=True, timeout=120)
    run = subprocess.run(
        [qhopper, "--log-format", "json", "run", "--backend", "ibm:ibm_torino"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if "run failed" in line]
    assert len(lines) == 1 and "ibm:ibm_torino could not be set up" in lines[0], run.stderr
    assert "valid API token" in lines[0]  # it got as far as presenting the token to IBM
    assert TOKEN not in run.stdout + run.stderr
    for path in home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    status = subprocess.run(
        [qhopper, "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(status.stdout)["queued"] == 1  # nothing was claimed: it waits for a backend
