"""Throughput where the run process is the limit: a drain of many small problems, side by side
with the commit before the work on it.

    make bench-throughput        # or: .venv/bin/python benchmarks/bench_throughput.py
        [--problems 200000] [--baseline REF] [--databases sqlite postgresql] [--profile]

The baseline is a git worktree of ``--baseline`` (default ``BASELINE``, the commit before
issue 26's work), run with this checkout's virtual environment and its own code first on
``PYTHONPATH`` (its Dask workers inherit it). Each side, on each database, gets a fresh home
and intake, the same problems submitted with its own ``qhopper submit`` (not timed), then one
``qhopper run`` (the product's own command, its default settings: a local cluster of two
workers) that drains them all. Measured: problems per second over the drain, seconds from
the run's start to its first answer in Parquet, the peak RSS of the run process and of its
largest worker, and the run's own stage timings from its ``runs/`` row. Every problem must
have exactly one row. ``--profile`` also runs this checkout's drain under cProfile and prints
where the run process spends its time, by function.

Problems: 4-8 variables; half MaxCut on the quantum route (on a pool of graphs, so they
group by shape as a team's nightly backlog would), a quarter QUBO and a quarter portfolio on
the classical route.

Targets (issue 26): >= 5x the baseline's problems per second on both databases, answers in
the first 10 s, peak RSS <= 1 GiB per process.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from bench_intake import intake_url

from pipeline.results import query

REPO = Path(__file__).resolve().parent.parent
BASELINE = "4f91999"  # main before issue 26: the commit every figure is compared against
PG_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
TARGET_RATIO, TARGET_FIRST_S, TARGET_RSS = 5.0, 10.0, 1 << 30


def records(count: int, seed: int = 26) -> Iterator[dict[str, object]]:
    """``count`` small problems: MaxCut (quantum) on a pool of 20 graphs, QUBO and portfolio
    (classical), 4-8 variables, weights drawn per problem."""
    rng = random.Random(seed)
    graphs = {}
    for n in range(4, 9):
        for g in range(4):
            pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
            kept = [p for p in pairs if rng.random() < 0.5] or [(0, 1)]
            graphs[(n, g)] = kept
    for i in range(count):
        n = 4 + i % 5
        record: dict[str, object]
        if i % 2 == 0:
            edges = [[a, b, rng.randint(1, 9)] for a, b in graphs[(n, rng.randrange(4))]]
            record = {"kind": "maxcut", "n": n, "edges": edges, "route": "quantum"}
        elif i % 4 == 1:
            linear = [[v, rng.randint(-9, 9)] for v in range(n)]
            quadratic = [
                [a, b, rng.randint(-9, 9)]
                for a in range(n)
                for b in range(a + 1, n)
                if rng.random() < 0.5
            ]
            record = {
                "kind": "qubo",
                "n": n,
                "linear": linear,
                "quadratic": quadratic,
                "route": "classical",
            }
        else:
            mu = [round(rng.uniform(-0.2, 1.0), 3) for _ in range(n)]
            a = [[rng.gauss(0, 1) for _ in range(n)] for _ in range(n)]
            sigma = [
                [round(sum(a[r][k] * a[c][k] for k in range(n)) / n, 3) for c in range(n)]
                for r in range(n)
            ]
            record = {
                "kind": "portfolio",
                "mu": mu,
                "sigma": sigma,
                "budget": n // 2,
                "risk": 0.5,
                "route": "classical",
            }
        yield record | {"key": f"t-{i}"}


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """The code of ``ref`` beside this checkout, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="qhopper-baseline-")) / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), ref],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
            check=False,
            capture_output=True,
        )


class Watch:
    """A process and its descendants while they run: the largest RSS the process and any one
    descendant reached, and the CPU seconds each has used (last seen: whose limit a run is)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.own = self.child = 0
        self.cpu: dict[int, float] = {}
        self.threads: dict[int, float] = {}  # the run process's threads' CPU seconds
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopped.wait(0.2):
            try:
                self.own = max(self.own, self.process.memory_info().rss)
                self.cpu[self.process.pid] = sum(self.process.cpu_times()[:2])
                self.threads = {t.id: t.user_time + t.system_time for t in self.process.threads()}
                for child in self.process.children(recursive=True):
                    self.child = max(self.child, child.memory_info().rss)
                    self.cpu[child.pid] = sum(child.cpu_times()[:2])
            except psutil.Error:
                continue

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()

    def main_thread_share(self) -> float:
        """The run process's main thread's share of its CPU (the rest: Dask's client, the
        progress display, the lease keeper)."""
        total = sum(self.threads.values())
        return self.threads.get(self.process.pid, 0.0) / total if total else float("nan")

    def cpu_seconds(self) -> tuple[float, float]:
        """The process's CPU seconds, and its descendants' together."""
        own = self.cpu.get(self.process.pid, 0.0)
        return own, sum(self.cpu.values()) - own


def first_answer(results: Path, started: float, stop: threading.Event) -> list[float]:
    """Seconds from ``started`` to the first answer file under ``results/problems``, filled in
    by a watching thread (empty until then)."""
    found: list[float] = []

    def watch() -> None:
        while not stop.wait(0.05):
            folder = results / "problems"
            if folder.exists() and any(folder.rglob("*.parquet")):
                found.append(time.perf_counter() - started)
                return

    threading.Thread(target=watch, daemon=True).start()
    return found


def drain(
    root: Path, source: Path, count: int, database: str | None, profile: Path | None
) -> dict[str, float]:
    """One side's drain of ``source`` on a fresh home and intake: its figures."""
    work = Path(tempfile.mkdtemp(prefix="qhopper-throughput-"))
    home, results = work / "home", work / "results"
    home.mkdir()
    env = {**os.environ, "PYTHONPATH": str(root), "QHOPPER_RESULTS_URL": str(results)}
    env.pop("PREFECT_API_URL", None)
    launcher = work / "qhopper_cli.py"  # the console script's body, run by this interpreter
    launcher.write_text(  # guarded: Dask's worker processes import it again as they start
        "import sys\nfrom flows.cli import main\nif __name__ == '__main__':\n    sys.exit(main())\n"
    )
    cli = [sys.executable, str(launcher)]
    profiled = (
        cli
        if profile is None
        else [sys.executable, "-m", "cProfile", "-o", str(profile), str(launcher)]
    )
    try:
        with intake_url(work, "intake", database) as url:
            env["QHOPPER_DATABASE_URL"] = url
            subprocess.run(
                [*cli, "submit", str(source), "--home", str(home)],
                env=env,
                cwd=root,
                check=True,
                capture_output=True,
                timeout=3600,
            )
            stop = threading.Event()
            started = time.perf_counter()
            first = first_answer(results, started, stop)
            run = subprocess.Popen(
                [*profiled, "run", "--home", str(home)],
                env=env,
                cwd=root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            watch = Watch(run.pid)
            _, stderr = run.communicate(timeout=4 * 3600)
            seconds = time.perf_counter() - started
            stop.set()
            watch.stop()
            if run.returncode != 0:
                raise SystemExit(
                    f"qhopper run failed ({run.returncode}):\n{stderr.decode()[-3000:]}"
                )
        figures = check_and_read(results, count)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "seconds": seconds,
        "problems_per_s": count / seconds,
        "first_answer_s": first[0] if first else float("nan"),
        "run_rss_mib": watch.own / 2**20,
        "worker_rss_mib": watch.child / 2**20,
        "run_cpu_s": watch.cpu_seconds()[0],
        "workers_cpu_s": watch.cpu_seconds()[1],
        "run_main_thread_share": watch.main_thread_share(),
        **figures,
    }


def check_and_read(results: Path, count: int) -> dict[str, float]:
    """Every problem answered exactly once; the run's stage timings."""
    rows = query(results, "SELECT problem_id, status FROM problems").to_pylist()
    answered = Counter(r["problem_id"] for r in rows)
    assert len(answered) == count and set(answered.values()) == {1}, "not exactly one row a problem"
    statuses = Counter(r["status"] for r in rows)
    assert statuses.get("failed", 0) == 0, statuses
    batches = query(results, "SELECT route, count(*) AS n FROM batches GROUP BY route").to_pylist()
    [run] = query(results, "SELECT * FROM runs").to_pylist()
    counts = {f"batches_{b['route']}": float(b["n"]) for b in batches}
    return counts | {k: float(v) for k, v in run.items() if k.startswith("t_") and v}


def show_profile(path: Path) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=200_000)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument(
        "--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    parser.add_argument(
        "--sides", nargs="+", default=["baseline", "current"], choices=["baseline", "current"]
    )
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    source = Path(tempfile.mkdtemp(prefix="qhopper-throughput-src-")) / "problems.jsonl"
    with source.open("w") as out:
        for record in records(args.problems):
            out.write(json.dumps(record) + "\n")
    print(f"{args.problems} problems; baseline {args.baseline}; this checkout {head()}", flush=True)
    with worktree(args.baseline) as baseline_root:
        roots = {"baseline": baseline_root, "current": REPO}
        for database in args.databases:
            url = PG_URL if database == "postgresql" else None
            found = {}
            for side in args.sides:
                profile = (
                    Path(tempfile.mkdtemp()) / "run.prof"
                    if args.profile and side == "current"
                    else None
                )
                found[side] = drain(roots[side], source, args.problems, url, profile)
                print(
                    json.dumps(
                        {
                            "database": database,
                            "side": side,
                            **{k: round(v, 3) for k, v in found[side].items()},
                        }
                    ),
                    flush=True,
                )
                if profile is not None:
                    show_profile(profile)
            if len(found) == 2:
                ratio = found["current"]["problems_per_s"] / found["baseline"]["problems_per_s"]
                print(
                    f"{database}: {found['baseline']['problems_per_s']:.0f} -> {found['current']['problems_per_s']:.0f} "
                    f"problems/s, ratio {ratio:.2f} (target >= {TARGET_RATIO:g}); first answer "
                    f"{found['current']['first_answer_s']:.1f} s (target <= {TARGET_FIRST_S:g}); peak RSS run "
                    f"{found['current']['run_rss_mib']:.0f} MiB, worker {found['current']['worker_rss_mib']:.0f} MiB "
                    f"(target <= {TARGET_RSS >> 20})",
                    flush=True,
                )


def head() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


if __name__ == "__main__":
    main()
