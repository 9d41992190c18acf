"""Device-shaped batches through `qhopper run`: packed against one problem a circuit.

    make bench-devices           # or: .venv/bin/python benchmarks/bench_devices.py [--count N]

On ``aer-noisy:fake_torino`` (Aer with the 133-qubit device's noise model and coupling map,
each region of a packed circuit simulated on its own: see pipeline/backends/regionwise.py),
``count`` weighted 10-node 3-regular MaxCut problems, each on its own random graph, run
in the same benchmark run, each time on a fresh home through `run_once` (the function
`qhopper run` calls): with the default settings (``packing = true``, ``packing_fidelity =
0.75``, ``device_evaluations = 0``), packed on every region of the chip (``packing_fidelity
= 0``) and with ``packing = false``. From the Parquet rows: provider jobs, problems per job,
estimated QPU seconds per answer (each job's fixed time plus 250 us a shot, IBM's figures:
pipeline.config.PriceSettings), the mean expectation ratio against each problem's optimum
(an independent brute force over all 1,024 cuts) and its spread over the chip's regions,
and the share of answers whose objective, recomputed from the returned bitstring, is what
the row says.

Then a packed run with ``[backends.aer-noisy] executables_per_job`` set small: its batches
must be cut into the expected number of jobs, every answer still correct.

Targets (issue 24): >= 10 problems per job; QPU seconds per answer >= 8x lower packed than
unpacked; mean expectation ratio packed within 0.02 of unpacked.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from bench_engine import exact_optimum, regular_graph

from flows.deps import open_deps
from flows.run import run_once
from pipeline.config_sources import load_settings
from pipeline.formulation import formulate
from pipeline.model import MaxCutSpec
from pipeline.results import query
from pipeline.submit import submit_files

NODES, BACKEND = 10, "aer-noisy:fake_torino"
TARGET_PER_JOB, TARGET_QPU_RATIO, TARGET_RATIO_GAP = 10.0, 8.0, 0.02
SMALL_LIMIT = 2  # executables a job in the splitting run


def problems(count: int, seed: int = 24) -> tuple[list[dict], dict[str, float]]:
    """``count`` weighted 10-node 3-regular MaxCut records, and each one's optimum by key."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        edges = [[u, v, round(rng.uniform(0.1, 1.0), 4)] for u, v in regular_graph(NODES, 3, rng)]
        records.append({"key": f"dev-{i}", "kind": "maxcut", "n": NODES, "edges": edges})
    optima = {
        r["key"]: exact_optimum(
            formulate(MaxCutSpec.model_validate({k: v for k, v in r.items() if k != "key"}))
        )
        for r in records
    }
    return records, optima


def run(home: Path, records: list[dict], toml: str) -> float:
    """Submit ``records`` to a fresh ``home`` with ``toml`` as its settings and run them as
    `qhopper run` does; the run's seconds."""
    home.mkdir(parents=True)
    (home / "qhopper.toml").write_text(toml)
    settings = load_settings(home)
    source = home / "problems.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    submit_files(settings, [source])
    started = time.perf_counter()
    with open_deps(settings) as deps:
        run_once(deps)
    return time.perf_counter() - started


def figures(home: Path, records: list[dict], optima: dict[str, float]) -> dict[str, Any]:
    settings = load_settings(home)
    rows = query(
        settings.results_location,
        "SELECT key, batch_id, route, expected_objective, objective, solution, qubits"
        " FROM problems",
    ).to_pylist()
    batches = query(
        settings.results_location,
        "SELECT sum(jobs)::BIGINT AS jobs, sum(qpu_seconds) AS qpu, count(*) AS batches FROM batches"
        " WHERE route = 'quantum'",
    ).to_pylist()[0]
    quantum = [r for r in rows if r["route"] == "quantum"]
    if len(quantum) != len(records):
        raise SystemExit(f"{len(records) - len(quantum)} problems without a quantum answer")
    by_key = {r["key"]: r for r in records}
    ratios = {r["key"]: r["expected_objective"] / optima[r["key"]] for r in quantum}
    regions: dict[tuple[int, ...], list[float]] = defaultdict(list)
    for r in quantum:
        regions[tuple(r["qubits"] or ())].append(ratios[r["key"]])
    region_means = [statistics.fmean(v) for v in regions.values()]
    # Each batch's circuits: its problems over the regions it used (one problem a region).
    seats: dict[str, list[tuple[int, ...]]] = defaultdict(list)
    for r in quantum:
        seats[r["batch_id"]].append(tuple(r["qubits"] or ()))
    circuits = [math.ceil(len(s) / len(set(s))) for s in seats.values()]
    return {
        "jobs": batches["jobs"],
        "batches": batches["batches"],
        "per_job": len(quantum) / batches["jobs"],
        "qpu_per_answer": batches["qpu"] / len(quantum),
        "ratio": statistics.fmean(ratios.values()),
        "regions": len(regions),
        "circuits": circuits,
        "region_low": min(region_means),
        "region_high": max(region_means),
        "optimal": statistics.fmean(abs(r["objective"] - optima[r["key"]]) < 1e-6 for r in quantum),
        "recomputed": statistics.fmean(
            abs(cut(by_key[r["key"]], r["solution"]) - r["objective"]) < 1e-6 for r in quantum
        ),
    }


def cut(record: dict, solution: str) -> float:
    """The cut weight of ``solution`` (bit k: node k), computed here from the record."""
    bits = np.array([int(c) for c in solution])
    return float(sum(w for u, v, w in record["edges"] if bits[u] != bits[v]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=120, help="problems a run")
    args = parser.parse_args()
    records, optima = problems(args.count)
    base = f'[quantum]\nbackend = "{BACKEND}"\n'
    cases = {
        "packed": base,
        "packed, every region": base + "packing_fidelity = 0.0\n",
        "unpacked": base + "packing = false\n",
        f"packed, {SMALL_LIMIT} executables a job": base
        + f"\n[backends.aer-noisy]\nexecutables_per_job = {SMALL_LIMIT}\n",
    }
    print(f"{args.count} weighted {NODES}-node 3-regular MaxCut on {BACKEND}, p=2, 1024 shots")
    print(
        f"{'case':28} {'batches':>7} {'jobs':>5} {'per job':>7} {'QPU s/answer':>12}"
        f" {'E ratio':>8} {'regions':>7} {'region lo..hi':>15} {'best=opt':>8} {'recomp':>6}"
        f" {'s':>6}"
    )
    found = {}
    with tempfile.TemporaryDirectory(prefix="qhopper-bench-devices-") as scratch:
        for label, toml in cases.items():
            home = Path(scratch) / label.split(",")[0].replace(" ", "-") / str(len(found))
            seconds = run(home, records, toml)
            f = found[label] = figures(home, records, optima)
            print(
                f"{label:28} {f['batches']:7d} {f['jobs']:5d} {f['per_job']:7.1f}"
                f" {f['qpu_per_answer']:12.4f} {f['ratio']:8.4f} {f['regions']:7d}"
                f" {f['region_low']:7.4f}..{f['region_high']:.4f} {f['optimal']:8.0%}"
                f" {f['recomputed']:6.0%} {seconds:6.1f}",
                flush=True,
            )
    packed, unpacked = found["packed"], found["unpacked"]
    split = found[f"packed, {SMALL_LIMIT} executables a job"]
    qpu_ratio = unpacked["qpu_per_answer"] / packed["qpu_per_answer"]
    circuits = sum(math.ceil(c / SMALL_LIMIT) for c in split["circuits"])
    print(
        f"QPU seconds per answer: {qpu_ratio:.1f}x lower packed (target >= {TARGET_QPU_RATIO:g});"
        f" ratio packed - unpacked: {packed['ratio'] - unpacked['ratio']:+.4f}"
        f" (target >= -{TARGET_RATIO_GAP}); split run: {split['jobs']} jobs, {circuits} expected"
    )
    failed = []
    if packed["per_job"] < TARGET_PER_JOB:
        failed.append(f"{packed['per_job']:.1f} problems per job < {TARGET_PER_JOB:g}")
    if qpu_ratio < TARGET_QPU_RATIO:
        failed.append(f"QPU seconds {qpu_ratio:.1f}x lower < {TARGET_QPU_RATIO:g}x")
    if packed["ratio"] < unpacked["ratio"] - TARGET_RATIO_GAP:
        failed.append(f"ratio {packed['ratio']:.4f} vs {unpacked['ratio']:.4f} unpacked")
    if split["jobs"] != circuits:
        failed.append(f"split run made {split['jobs']} jobs, {circuits} expected")
    if any(f["recomputed"] < 1 for f in found.values()):
        failed.append("an answer's objective differs from its bitstring's")
    print("targets met" if not failed else "targets missed:\n  " + "\n  ".join(failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
