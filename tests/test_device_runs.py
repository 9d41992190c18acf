"""Runs on a device stand-in (aer-noisy: a fake IBM device's coupling map and noise model):
no optimiser loop, problems packed side by side, every call cut into the provider's jobs.

Each answer is checked against independent truth (tests/truth.py): its objective recomputed
from its bitstring, its expectation never above the brute-force optimum.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from factories import planned, problem
from truth import brute_force, objective

from batching.economics import device_workload
from flows.deps import open_deps
from flows.run import run_once
from pipeline.backends.devices import DeviceTarget, fake_device
from pipeline.backends.ibm import RuntimeCosts
from pipeline.backends.limits import IBM_RUNTIME
from pipeline.backends.regions import choose_regions
from pipeline.backends.registry import get_backend
from pipeline.config import PriceSettings
from pipeline.config_sources import load_settings
from pipeline.qaoa.device import DeviceRun
from pipeline.qaoa.shapes import pool_of
from pipeline.results import query
from pipeline.submit import submit_files

DEVICE, N = "fake_kolkata", 5  # 27 qubits: a few 5-qubit regions
RECORDS = [problem("maxcut", N, seed=s, nonempty=True, key=f"d-{s}") for s in range(7)]


def run(
    home: Path, family: str = "aer-noisy", **overrides: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The records through `run_once` on the stand-in: (problem rows, quantum batch rows)."""
    settings = load_settings(
        home,
        overrides={
            "quantum.backend": f"{family}:{DEVICE}",
            "quantum.packing_fidelity": 0.0,  # every region of the chip (see test_packing)
            "dask.inline_below_s": 1e9,
            "classical.time_limit_s": 2.0,
            **overrides,
        },
    )
    source = home / "p.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    submit_files(settings, [source])
    with open_deps(settings) as deps:
        summary = run_once(deps)
    assert summary.completed == len(RECORDS)
    rows = query(settings.results_location, "SELECT * FROM problems ORDER BY key").to_pylist()
    batches = query(
        settings.results_location, "SELECT * FROM batches WHERE route = 'quantum'"
    ).to_pylist()
    return rows, batches


def check_answers(rows: list[dict[str, Any]], evaluations: int) -> None:
    by_key = {r["key"]: r for r in RECORDS}
    assert [r["key"] for r in rows] == sorted(by_key)
    for row in rows:
        record = by_key[row["key"]]
        assert row["route"] == "quantum" and row["evaluations"] == evaluations
        assert row["objective"] == pytest.approx(objective(record, row["solution"]))
        assert 0 < row["expected_objective"] <= brute_force(record) + 1e-9
        assert len(row["qubits"]) == N


@pytest.fixture(scope="module")
def regions() -> int:
    return len(choose_regions(fake_device(DEVICE).target, N))


@pytest.mark.parametrize("family", ["aer-noisy", "ibm"])  # ibm:fake_*: local testing mode
def test_a_device_run_packs_its_batch_into_one_sampling_job(
    home: Path, regions: int, family: str
) -> None:
    """Seven problems of seven graphs: one pool, one batch, its circuits each holding as
    many problems as the chip has regions, all in one job; no evaluation, the class's
    angles as they are."""
    assert 2 <= regions < len(RECORDS)
    rows, batches = run(home, family)
    check_answers(rows, evaluations=0)
    (batch,) = batches
    assert (batch["jobs"], batch["problems_per_job"]) == (1, len(RECORDS))
    assert len(batch["provider_job_ids"].split(",")) == 1
    # The k-th problem of the batch sits on region k % regions of circuit k // regions:
    # every row on one of the chip's regions, each region holding one problem a circuit.
    chosen = [r.qubits for r in choose_regions(fake_device(DEVICE).target, N)]
    seats = Counter(tuple(r["qubits"]) for r in rows)
    circuits = math.ceil(len(RECORDS) / regions)
    expected = [len(range(slot, len(RECORDS), regions)) for slot in range(regions)]
    # Regions are ranked by how the batch's first problem fares there: which region is
    # slot 0 follows that problem, so the counts are compared as a multiset.
    assert set(seats) == set(chosen)
    assert sorted(seats.values(), reverse=True) == expected
    assert batch["qpu_seconds"] == pytest.approx(2.0 + circuits * 1024 * 250e-6)


def test_unpacked_a_problem_runs_alone_and_a_limit_cuts_the_jobs(home: Path) -> None:
    """packing = false: each graph is its own batch and circuit; with three angle sets a
    problem, every row counts three evaluations, still one job a batch."""
    rows, batches = run(home, **{"quantum.packing": False, "quantum.device_evaluations": 3})
    check_answers(rows, evaluations=3)
    assert len(batches) == len(RECORDS)
    assert all((b["jobs"], b["problems_per_job"]) == (1, 1.0) for b in batches)


def test_a_small_executables_limit_splits_a_packed_batch(home: Path, regions: int) -> None:
    """[backends.aer-noisy] executables_per_job = 1: each packed circuit its own job, every
    answer still correct."""
    (home / "qhopper.toml").write_text("[backends.aer-noisy]\nexecutables_per_job = 1\n")
    rows, batches = run(home)
    check_answers(rows, evaluations=0)
    (batch,) = batches
    assert batch["jobs"] == math.ceil(len(RECORDS) / regions)


def test_the_router_prices_a_device_batch_by_its_jobs_and_shots() -> None:
    """On a QPU a batch is one sampling job whose shots run once a circuit: 40 problems ten
    a circuit at 1,000 shots are 4,000 shots, three angle sets each triple them, and the
    runtime's price model bills the job's fixed seconds plus 250 us a shot."""
    problems = [
        planned(i, problem("maxcut", 10, graph="regular", seed=i), reps=2, shots=1000)
        for i in range(40)
    ]
    shape = pool_of(problems[0].formulation.ising, 2, "ibm")
    packed = device_workload(shape, problems, DeviceRun(packing=True), per_circuit=10)
    assert (packed.calls, packed.evaluations, packed.shots) == (1, 0, 4000)
    scanned = device_workload(shape, problems, DeviceRun(True, evaluations=3), per_circuit=10)
    assert scanned.shots == 12000
    alone = device_workload(shape, problems, DeviceRun(packing=False), per_circuit=1)
    target = get_backend("ibm:fake_torino", 20).target
    assert isinstance(target, DeviceTarget)
    qpu = RuntimeCosts(target, local=False, limits=IBM_RUNTIME)  # priced as the real device
    prices = PriceSettings()
    seconds = [qpu.estimate(w, prices, 1 << 30).execute_s for w in (packed, scanned, alone)]
    assert seconds == pytest.approx(
        [2.0 + 4000 * 250e-6, 2.0 + 12000 * 250e-6, 2.0 + 40000 * 250e-6]
    )
