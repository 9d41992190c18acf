"""Fallback under faults: 1,000 small problems with 0 %, 10 %, 30 % transient faults and an outage.

    .venv/bin/python benchmarks/bench_fallback.py [--problems N] [--workers 2]

Each scenario submits the same problems to a fresh home and runs the flow's steps
(recover, collect, plan, route, compile, execute, write) on one two-process LocalCluster,
with the fault wrapper around real Aer (``faulty:aer?transient=R&latency=2ms&seed=S``)
and real CP-SAT. The fault wrapper makes the engine use the backend's Estimator for
every evaluation, so each optimiser step is a provider call that can fail. Printed per
scenario: problems answered, degraded, quantum attempts and failures, the most attempts
any one call took (the bound is ``retry.max_attempts``), cost per successful answer
(every attempt billed, failed ones included), and p50/p95 seconds per stage per problem.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from flows.compute import local_cluster
from flows.deps import open_deps
from flows.run import run_once
from pipeline.config_sources import load_settings
from pipeline.results import query
from pipeline.submit import submit_files

SCENARIOS = {
    "0% transient": "faulty:aer?latency=2ms&seed=1",
    "10% transient": "faulty:aer?transient=0.1&latency=2ms&seed=2",
    "30% transient": "faulty:aer?transient=0.3&latency=2ms&seed=3",
    "outage": "faulty:aer?outage=1&seed=4",
}
SETTINGS = {
    "retry.max_attempts": 4,
    "retry.backoff_initial_s": 0.01,
    "retry.backoff_max_s": 0.1,
    "retry.breaker_cooldown_s": 30.0,
    "quantum.max_iterations": 6,
    "quantum.max_batch_size": 32,
    "quantum.default_shots": 256,
    "classical.time_limit_s": 5.0,
}
STAGES = ("t_queue_s", "t_compile_s", "t_execute_s", "t_post_s", "t_total_s")


def small_problems(count: int, seed: int) -> list[dict[str, Any]]:
    """MaxCut on four 4-6 node graphs (few shapes, many problems each), new weights each."""
    rng = random.Random(seed)
    graphs = [
        [(i, (i + 1) % n) for i in range(n)] + ([(0, n // 2)] if n > 4 else [])
        for n in (4, 5, 6, 6)
    ]
    graphs[3] = [(i, j) for i in range(6) for j in range(i + 1, 6) if (i + j) % 3 == 0]
    problems = []
    for index in range(count):
        edges = graphs[index % len(graphs)]
        n = 1 + max(max(e) for e in edges)
        problems.append(
            {"kind": "maxcut", "n": n, "edges": [[i, j, rng.randint(1, 9)] for i, j in edges]}
        )
    return problems


def run_scenario(
    root: Path, backend: str, problems: list[dict[str, Any]], address: str
) -> dict[str, Any]:
    home = root / backend.split("?")[1].replace("&", "_").replace("=", "-")
    home.mkdir(parents=True)
    overrides = {**SETTINGS, "quantum.backend": backend, "dask.address": address}
    settings = load_settings(home, overrides=overrides)
    source = home / "problems.jsonl"
    source.write_text("\n".join(json.dumps(p) for p in problems) + "\n")
    submit_files(settings, [source])
    started = time.perf_counter()
    with open_deps(settings) as deps:
        run_once(deps)  # the one run core every entry point calls
    wall = time.perf_counter() - started
    rows = query(settings.results_location, "SELECT * FROM problems").to_pylist()
    batches_rows = query(settings.results_location, "SELECT * FROM batches").to_pylist()
    answered = [r for r in rows if r["solution"] is not None]
    return {
        "rows": len(rows),
        "answered": len(answered),
        "degraded": sum(r["status"] == "degraded" for r in rows),
        "quantum": sum(r["route"] == "quantum" for r in rows),
        "attempts": sum(b["backend_attempts"] or 0 for b in batches_rows),
        "failures": sum(b["backend_failures"] or 0 for b in batches_rows),
        "max_per_call": max((b["max_attempts_per_call"] or 0 for b in batches_rows), default=0),
        "cost_per_answer": sum(r["cost_usd"] for r in rows) / max(1, len(answered)),
        "stages": {
            stage: tuple(np.percentile([r[stage] for r in rows], [50, 95])) for stage in STAGES
        },
        "wall_s": wall,
        "reasons": sorted(
            {(r["fallback_reason"] or "")[:60] for r in rows if r["fallback_reason"]}
        )[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    problems = small_problems(args.problems, seed=2026)
    print(
        f"{args.problems} MaxCut problems (4-6 nodes), retry bound {SETTINGS['retry.max_attempts']} attempts per call, "
        f"{args.workers} single-threaded Dask workers"
    )
    results = {}
    with (
        tempfile.TemporaryDirectory(prefix="qhopper-bench-fallback-") as tmp,
        local_cluster(args.workers) as client,
    ):
        address = str(client.scheduler_info()["address"])
        for name, backend in SCENARIOS.items():
            results[name] = run_scenario(Path(tmp), backend, problems, address)
            print(f"  {name}: {results[name]['wall_s']:.1f}s", flush=True)
    header = (
        f"{'scenario':<15}{'answered':>9}{'degraded':>9}{'quantum':>8}{'attempts':>9}"
        f"{'failed':>7}{'max/call':>9}{'USD/answer':>12}{'wall s':>8}"
    )
    print("\n" + header)
    for name, r in results.items():
        print(
            f"{name:<15}{r['answered']:>5}/{r['rows']:<4}{r['degraded']:>8}{r['quantum']:>8}"
            f"{r['attempts']:>9}{r['failures']:>7}{r['max_per_call']:>9}"
            f"{r['cost_per_answer']:>12.3e}{r['wall_s']:>8.1f}"
        )
    print("\nSeconds per stage per problem, p50 / p95")
    print(f"{'scenario':<15}" + "".join(f"{s[2:-2]:>17}" for s in STAGES))
    for name, r in results.items():
        print(
            f"{name:<15}"
            + "".join(f"{r['stages'][s][0]:>8.3f} /{r['stages'][s][1]:>7.3f}" for s in STAGES)
        )
    print("\nFallback reasons seen (first 60 characters):")
    for name, r in results.items():
        for reason in r["reasons"]:
            print(f"  {name}: {reason}")


if __name__ == "__main__":
    main()
