"""One queue on every vendor, and what a 10 % canary costs the run beside it.

200 mixed problems that fit every backend (MaxCut, QUBO and portfolio of 4-5 variables: the
5-qubit fake_manila is the smallest), submitted once; copies of that home run once per
backend, through ``run_once`` with the default settings but ``[quantum] backend``. Printed
per backend: wall time, provider jobs or tasks, the router's estimated cost and what was
billed, the mean expectation ratio (expected objective against the classical reference,
``pipeline.quality.ratio_sql``) and how many best samples equal the reference.

Then the canary: copies of the same home run on Aer alternately without and with
``[canary] backend = "braket-local"`` at 10 %, on one warm two-worker LocalCluster (as
``qhopper serve`` keeps one; a canary backend's first use in a worker process pays its import,
~1.4 s for Braket's SDK, once a worker lifetime). There the canary samples after the run's own
work (flows/canary.py); each pair waits for it (``settle``) before the next run, so its work
falls in no run's time. Medians of ``--repeats`` pairs, and the ratio; the baseline is the
same runs without a canary, measured in the same session.

    .venv/bin/python benchmarks/bench_vendors.py [--problems 200] [--repeats 5]
        [--backends aer braket-local ibm:fake_manila braket-local:dm]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from factories import problem  # noqa: E402

from flows.canary import settle  # noqa: E402
from flows.deps import open_deps  # noqa: E402
from flows.run import run_once  # noqa: E402
from pipeline.config_sources import load_settings  # noqa: E402
from pipeline.quality import ratio_sql  # noqa: E402
from pipeline.results import query  # noqa: E402
from pipeline.submit import submit_files  # noqa: E402

BACKENDS = ["aer", "braket-local", "ibm:fake_manila", "braket-local:dm"]
KINDS = ("maxcut", "qubo", "portfolio")


def queued_home(root: Path, problems: int) -> Path:
    """``problems`` mixed records of 4-5 variables, submitted to a fresh home."""
    records = []
    for i in range(problems):
        kind, n = KINDS[i % 3], 4 + (i // 3) % 2
        extra = {"nonempty": True} if kind == "maxcut" else {}
        records.append(problem(kind, n, seed=i, key=f"{kind}-{i}", route="quantum", **extra))
    source = root / "problems.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    home = root / "queued"
    submit_files(load_settings(home), [source])
    return home


def run_copy(queued: Path, home: Path, overrides: dict[str, Any]) -> float:
    """Wall seconds of one ``run_once`` over a copy of the queued home."""
    shutil.copytree(queued, home)
    settings = load_settings(home, overrides=overrides)
    started = time.perf_counter()
    with open_deps(settings) as deps:
        summary = run_once(deps)
    wall = time.perf_counter() - started
    assert summary.completed == summary.problems, summary
    return wall


def vendor_row(queued: Path, home: Path, backend: str, iterations: int) -> dict[str, Any]:
    wall = run_copy(
        queued, home, {"quantum.backend": backend, "quantum.max_iterations": iterations}
    )
    results = load_settings(home).results_location
    problems = query(
        results,
        f"SELECT count(*) AS n, avg({ratio_sql('expected_objective')}) AS ratio, "
        "sum((objective = reference_objective)::int) AS best, sum(cost_usd) AS billed, "
        "count(*) FILTER (WHERE route <> 'quantum') AS elsewhere FROM problems",
    ).to_pylist()[0]
    batches = query(
        results,
        "SELECT sum(jobs) AS jobs, sum(est_quantum_cost_usd) AS estimated FROM batches "
        "WHERE route = 'quantum'",
    ).to_pylist()[0]
    row = {"backend": backend, "wall_s": wall, **problems, **batches}
    print(json.dumps(row, default=str), flush=True)  # each backend's figures as they come
    return row


def print_vendors(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'backend':18} {'wall s':>8} {'jobs':>6} {'est. USD':>10} {'billed USD':>11} "
        f"{'E ratio':>8} {'best=ref':>9} {'not quantum':>12}"
    )
    for r in rows:
        jobs, estimated, billed = (
            int(r["jobs"] or 0),
            float(r["estimated"] or 0),
            float(r["billed"] or 0),
        )
        print(
            f"{r['backend']:18} {r['wall_s']:8.1f} {jobs:6d} {estimated:10.6f} {billed:11.6f} "
            f"{float(r['ratio'] or 0):8.4f} {int(r['best'] or 0):>4}/{int(r['n']):<4} "
            f"{int(r['elsewhere']):12d}"
        )


def canary_pairs(queued: Path, root: Path, repeats: int) -> tuple[list[float], list[float]]:
    """Aer runs without and with a 10 % braket-local canary, alternately, on one warm cluster."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        base = {"dask.address": cluster.scheduler_address, "quantum.max_batch_size": 12}
        canary = {**base, "canary.backend": "braket-local", "canary.fraction": 0.1}
        run_copy(queued, root / "warm-up", {**canary, "canary.fraction": 1.0})  # imports
        settle()
        times: tuple[list[float], list[float]] = ([], [])
        for repeat in range(repeats):
            times[0].append(run_copy(queued, root / f"without-{repeat}", base))
            times[1].append(run_copy(queued, root / f"with-{repeat}", canary))
            settle()  # the canary samples after the run: not into the next run's time
            rows = query(
                load_settings(root / f"with-{repeat}").results_location,
                "SELECT count(*) AS n FROM canary",
            ).to_pylist()[0]["n"]
            print(
                f"  pair {repeat}: without {times[0][-1]:.2f} s, with {times[1][-1]:.2f} s "
                f"({rows} canary rows)"
            )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=BACKENDS)
    parser.add_argument(
        "--max-iterations",
        type=int,
        default=10,
        help="quantum.max_iterations on every backend (a noisy simulator estimating from shots"
        " runs every step's parameter sets as executables: ~0.1 s each on braket-local:dm)",
    )
    parser.add_argument(
        "--parts", nargs="+", choices=["vendors", "canary"], default=["vendors", "canary"]
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        queued = queued_home(root, args.problems)
        if "vendors" in args.parts:
            print(
                f"{args.problems} mixed problems of 4-5 variables, one run per backend"
                f" (quantum.max_iterations = {args.max_iterations} on each):"
            )
            rows = [
                vendor_row(queued, root / b.replace(":", "_"), b, args.max_iterations)
                for b in args.backends
            ]
            print_vendors(rows)
        if "canary" not in args.parts:
            return
        print("a 10 % canary on braket-local beside Aer runs (warm two-worker cluster):")
        without, with_canary = canary_pairs(queued, root, args.repeats)
        base, canaried = statistics.median(without), statistics.median(with_canary)
        print(
            f"median without {base:.2f} s, with the canary {canaried:.2f} s: "
            f"ratio {canaried / base:.3f} ({canaried / base - 1:+.1%}; target <= +10%)"
        )


if __name__ == "__main__":
    main()
