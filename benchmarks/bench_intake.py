"""Intake at scale: submit and claim throughput, and a 100,000-problem run's peak memory.

    .venv/bin/python benchmarks/bench_intake.py               # 100k problems (minutes)
    .venv/bin/python benchmarks/bench_intake.py --problems 20000 --baseline 1000

Prints, each measured in this same run on this machine:
- submit throughput (problems/s) of ``IntakeStore.submit`` (one transaction, multi-row
  inserts in chunks) against a baseline of one problem per call, one row per transaction;
- what durable commits cost: submit throughput with SQLite ``synchronous=FULL`` (the
  intake's setting: every commit synced, acknowledged means durable) against ``NORMAL``
  (synced at checkpoints only; a power cut can lose the last commits), batched and one
  row per transaction, on fresh databases;
- claim throughput of one ``claim()`` for the whole queue against claiming one problem
  per call;
- the peak memory of ``qhopper run`` draining the whole queue (route=classical, 4-6 node
  MaxCut, so it finishes in minutes): the largest single process (getrusage) and the
  whole process tree (sampled), with progress lines while it drains.
Not run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from pipeline.intake import IntakeStore, create_intake_engine
from pipeline.model import MaxCutSpec

QHOPPER = str(Path(sys.executable).parent / "qhopper")


def tiny(index: int) -> MaxCutSpec:
    rng = random.Random(index)
    n = rng.choice((4, 5, 6))
    edges = [[i, (i + 1) % n, rng.randint(1, 9)] for i in range(n)]
    return MaxCutSpec.model_validate(
        {"kind": "maxcut", "n": n, "edges": edges, "route": "classical", "key": f"bench-{index}"}
    )


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def bench_submit(root: Path, problems: int, baseline: int) -> tuple[IntakeStore, IntakeStore]:
    """Fill the queue under test and a baseline queue; return both stores."""
    specs = [(tiny(i), f"bench:{i}") for i in range(problems)]
    store = IntakeStore.open(f"sqlite:///{root / 'home' / 'intake.db'}")
    started = time.perf_counter()
    for start in range(0, problems, 10_000):  # one call per 10k, as `qhopper submit` files
        store.submit(specs[start : start + 10_000])
    batched = rate(problems, time.perf_counter() - started)
    single = IntakeStore.open(f"sqlite:///{root / 'baseline' / 'intake.db'}")
    started = time.perf_counter()
    for spec in specs[:baseline]:
        single.submit([spec])
    one_by_one = rate(baseline, time.perf_counter() - started)
    print(f"submit: {batched:10.0f} problems/s batched ({problems} problems)")
    print(f"submit: {one_by_one:10.0f} problems/s one row per transaction ({baseline} problems)")
    print(f"submit: {batched / one_by_one:10.1f}x the one-row baseline")
    return store, single


def bench_synchronous(root: Path, problems: int, baseline: int) -> None:
    """Submit throughput with synchronous=FULL against NORMAL, same specs, fresh databases."""
    specs = [(tiny(i), f"bench:{i}") for i in range(problems)]
    for mode in ("FULL", "NORMAL"):
        engine = create_intake_engine(f"sqlite:///{root / mode / 'intake.db'}", mode)
        store = IntakeStore(engine)
        store.create_schema()
        started = time.perf_counter()
        for start in range(0, problems, 10_000):
            store.submit(specs[start : start + 10_000])
        batched = rate(problems, time.perf_counter() - started)
        started = time.perf_counter()
        for i in range(baseline):
            store.submit([(tiny(problems + i), f"bench:{problems + i}")])
        one_by_one = rate(baseline, time.perf_counter() - started)
        print(
            f"submit synchronous={mode:6s}: {batched:10.0f} problems/s batched, "
            f"{one_by_one:8.0f} problems/s one row per transaction"
        )
        store.close()


def bench_claim(store: IntakeStore, single: IntakeStore, problems: int, baseline: int) -> None:
    """One claim for the whole queue against one problem per claim; then give it back."""
    started = time.perf_counter()
    claimed = store.claim("bench-claim", problems, 600)
    whole = rate(len(claimed), time.perf_counter() - started)
    assert len(claimed) == problems
    started = time.perf_counter()
    for i in range(baseline):
        single.claim(f"one-{i}", 1, 600)
    one_claim = rate(baseline, time.perf_counter() - started)
    print(f"claim:  {whole:10.0f} problems/s in one claim ({problems} problems)")
    print(f"claim:  {one_claim:10.0f} problems/s one problem per claim ({baseline} problems)")
    print(f"claim:  {whole / one_claim:10.1f}x the one-at-a-time baseline")
    store.release("bench-claim")  # queued again, for the run to drain


def bench_run(root: Path, problems: int, store: IntakeStore) -> None:
    home = root / "home"
    config = root / "qhopper.toml"
    config.write_text("[classical]\ntime_limit_s = 5.0\n")
    env = {**os.environ, "QHOPPER_HOME": str(home)}
    print(f"run: draining {problems} problems with `qhopper run` ...", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        [QHOPPER, "run", "--json", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    watched = psutil.Process(process.pid)
    peak_tree = 0
    last_report = 0.0
    while process.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak_tree = max(peak_tree, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass
        now = time.perf_counter()
        if now - last_report >= 10:
            counts = store.counts()
            done = counts["completed"] + counts["degraded"] + counts["failed"]
            print(f"run: {now - started:6.0f} s  {done:7d} / {problems} answered", flush=True)
            last_report = now
        time.sleep(0.5)
    stdout = process.stdout.read() if process.stdout else b""
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"qhopper run failed with {process.returncode}")
    summary = json.loads(stdout)
    largest_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    counts = store.counts()
    print(
        f"run: {summary['problems']} problems in {elapsed:.0f} s "
        f"({rate(summary['problems'], elapsed):.0f} problems/s end to end), "
        f"{counts['completed']} completed, {counts['degraded']} degraded, {counts['failed']} failed"
    )
    print(f"run: peak RSS {largest_kib / 1024:.0f} MiB (largest single process)")
    print(f"run: peak RSS {peak_tree / 2**20:.0f} MiB (whole process tree, sampled every 0.5 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=2_000)
    parser.add_argument("--no-run", action="store_true", help="measure the intake only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qhopper-bench-") as tmp:
        root = Path(tmp)
        store, single = bench_submit(root, args.problems, args.baseline)
        bench_synchronous(root, args.problems, args.baseline)
        bench_claim(store, single, args.problems, args.baseline)
        single.close()
        if not args.no_run:
            bench_run(root, args.problems, store)
        store.close()


if __name__ == "__main__":
    main()
