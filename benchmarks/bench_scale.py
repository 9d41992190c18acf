"""Scale-out: problems per second with 1, 2 and 3 Dask worker processes and 1 or 2 runners.

Each cell starts a Dask cluster of that many single-threaded worker processes (the
workers a ``dask worker`` command line would start, warmed by the same preload), submits
the same problems to a fresh home, starts that many ``qhopper run`` processes at once
against the cluster (as runners on separate hosts would), and times until all have
finished; every problem must be answered exactly once. The baseline is one worker and one
runner, measured in the same run. On a 2-core machine three workers oversubscribe the
cores: the table shows what that costs.

Run: ``make bench-scale`` (``--problems`` to change the size; PostgreSQL intake with
``--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test``: a fresh schema there
for every cell).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_intake import intake_url
from distributed import Client, LocalCluster

from flows.compute import QUIET_CLUSTER_CONFIG, SINGLE_THREAD_ENV
from pipeline.results import query

QHOPPER = str(Path(sys.executable).parent / "qhopper")


def records(count: int) -> list[dict[str, object]]:
    """Small MaxCut rings with chords, half of them for the classical route."""
    out: list[dict[str, object]] = []
    for i in range(count):
        n = 6 + i % 5
        edges = [[j, (j + 1) % n, 1 + (i + j) % 7] for j in range(n)] + [[0, n // 2, 2]]
        record: dict[str, object] = {"kind": "maxcut", "n": n, "edges": edges, "key": f"s-{i}"}
        if i % 2:
            record["route"] = "classical"
        out.append(record)
    return out


def cell(
    workers: int, runners: int, problems: Path, count: int, database: str | None
) -> tuple[float, list[int]]:
    """Seconds for ``runners`` runs on ``workers`` workers to answer every problem, and how
    many rows each run wrote (most first): the work split between runners."""
    import dask

    root = Path(tempfile.mkdtemp(prefix="qhopper-scale-"))
    env = {**os.environ, **SINGLE_THREAD_ENV, "QHOPPER_RESULTS_URL": str(root / "results")}
    env.pop("PREFECT_API_URL", None)
    with (
        intake_url(root, "scale", database) as url,  # an empty intake for every cell
        dask.config.set(QUIET_CLUSTER_CONFIG),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=50,
            preload=["flows.worker_setup"],
            env=SINGLE_THREAD_ENV,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(workers, timeout=180)
        env["QHOPPER_DATABASE_URL"] = url
        subprocess.run(
            [QHOPPER, "submit", str(problems), "--home", str(root / "host-0")],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        started = time.perf_counter()
        runs = [
            subprocess.Popen(
                [
                    QHOPPER,
                    "run",
                    "--home",
                    str(root / f"host-{r}"),
                    "--dask-address",
                    cluster.scheduler_address,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for r in range(runners)
        ]
        for run in runs:
            _, stderr = run.communicate(timeout=3600)
            assert run.returncode == 0, stderr.decode()[-2000:]
        seconds = time.perf_counter() - started
    rows = query(root / "results", "SELECT problem_id, run_id FROM problems").to_pylist()
    answered = Counter(r["problem_id"] for r in rows)
    assert len(answered) == count and set(answered.values()) == {1}, "not exactly once"
    by_run = Counter(r["run_id"] for r in rows)
    return seconds, sorted(by_run.values(), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=400)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    problems = Path(tempfile.mkdtemp(prefix="qhopper-scale-")) / "problems.jsonl"
    problems.write_text("".join(json.dumps(r) + "\n" for r in records(args.problems)))
    print(
        f"{args.problems} problems (half quantum, half classical), intake: "
        f"{'PostgreSQL' if args.database_url else 'SQLite'}; wall time to answer all"
    )
    print(
        f"{'workers':>8} {'runners':>8} {'seconds':>9} {'problems/s':>11} {'vs 1x1':>8}"
        "   rows per run"
    )
    baseline = None
    for workers in (1, 2, 3):
        for runners in (1, 2):
            seconds, split = cell(workers, runners, problems, args.problems, args.database_url)
            rate = args.problems / seconds
            baseline = baseline or rate
            shares = " / ".join(f"{n} ({n / args.problems:.0%})" for n in split)
            print(
                f"{workers:>8} {runners:>8} {seconds:>9.2f} {rate:>11.1f} {rate / baseline:>7.2f}x"
                f"   {shares}",
                flush=True,
            )


if __name__ == "__main__":
    main()
