"""Intake at scale: submit and claim throughput, and a big drain's memory and first answers.

    make bench-intake                                     # 100k problems, SQLite then PostgreSQL
    .venv/bin/python benchmarks/bench_intake.py --problems 1000000          # SQLite
    .venv/bin/python benchmarks/bench_intake.py --problems 1000000 \
        --database-url postgresql+psycopg://root@127.0.0.1:5432/test      # a fresh schema there

Prints, each measured in this same run on this machine:
- submit throughput (problems/s) of ``IntakeStore.submit`` (one transaction per 10,000,
  multi-row inserts in chunks) against a baseline of one problem per call, one row per
  transaction;
- (SQLite) what durable commits cost: submit throughput with ``synchronous=FULL`` (the
  intake's setting: every commit synced, acknowledged means durable) against ``NORMAL``
  (synced at checkpoints only; a power cut can lose the last commits), batched and one
  row per transaction, on fresh databases of 20,000 problems;
- claim throughput of one ``claim()`` of up to 100,000 problems against claiming one
  problem per call;
- ``qhopper run`` draining the whole queue (route=classical, 4-6 node MaxCut): time,
  problems/s, seconds to the first answer written, progress every 30 s, and the peak RSS
  of every process of the run's tree (sampled every 0.5 s: the run, its Dask workers),
  the largest also from getrusage.
The queue is filled 10,000 problems at a time, so the benchmark itself stays small too.
Not run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

from pipeline.intake import IntakeStore, create_intake_engine
from pipeline.model import MaxCutSpec

QHOPPER = str(Path(sys.executable).parent / "qhopper")
SUBMIT_CHUNK = 10_000
SYNC_PROBLEMS = 20_000
CLAIM_PROBLEMS = 100_000


def tiny(index: int) -> MaxCutSpec:
    rng = random.Random(index)
    n = rng.choice((4, 5, 6))
    edges = [[i, (i + 1) % n, rng.randint(1, 9)] for i in range(n)]
    return MaxCutSpec.model_validate(
        {"kind": "maxcut", "n": n, "edges": edges, "route": "classical", "key": f"bench-{index}"}
    )


def specs(start: int, stop: int) -> list[tuple[MaxCutSpec, str]]:
    return [(tiny(i), f"bench:{i}") for i in range(start, stop)]


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


@contextmanager
def intake_url(root: Path, name: str, database_url: str | None) -> Iterator[str]:
    """An empty intake: an SQLite file under ``root``, or a fresh PostgreSQL schema."""
    if database_url is None:
        (root / name).mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{root / name / 'intake.db'}"
        return
    schema = f"qh_bench_{name}_{secrets.token_hex(4)}"
    admin = sa.create_engine(database_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{database_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def fill(store: IntakeStore, problems: int) -> float:
    """Submit ``problems`` in calls of 10,000 (as `qhopper submit` files them); problems/s."""
    spent = 0.0  # in submit only, not in building the specs
    for start in range(0, problems, SUBMIT_CHUNK):
        batch = specs(start, min(problems, start + SUBMIT_CHUNK))
        started = time.perf_counter()
        store.submit(batch)
        spent += time.perf_counter() - started
    return rate(problems, spent)


def bench_submit(store: IntakeStore, single: IntakeStore, problems: int, baseline: int) -> None:
    batched = fill(store, problems)
    one = specs(problems, problems + baseline)
    started = time.perf_counter()
    for spec in one:
        single.submit([spec])
    one_by_one = rate(baseline, time.perf_counter() - started)
    print(f"submit: {batched:10.0f} problems/s batched ({problems} problems)")
    print(f"submit: {one_by_one:10.0f} problems/s one row per transaction ({baseline} problems)")
    print(f"submit: {batched / one_by_one:10.1f}x the one-row baseline", flush=True)


def bench_synchronous(root: Path, baseline: int) -> None:
    """SQLite submit throughput with synchronous=FULL against NORMAL, fresh databases."""
    for mode in ("FULL", "NORMAL"):
        (root / mode).mkdir()
        engine = create_intake_engine(f"sqlite:///{root / mode / 'intake.db'}", mode)
        store = IntakeStore(engine)
        store.create_schema()
        batched = fill(store, SYNC_PROBLEMS)
        one = specs(SYNC_PROBLEMS, SYNC_PROBLEMS + baseline)
        started = time.perf_counter()
        for spec in one:
            store.submit([spec])
        one_by_one = rate(baseline, time.perf_counter() - started)
        print(
            f"submit synchronous={mode:6s}: {batched:10.0f} problems/s batched, "
            f"{one_by_one:8.0f} problems/s one row per transaction ({SYNC_PROBLEMS} problems)"
        )
        store.close()


def bench_claim(store: IntakeStore, single: IntakeStore, problems: int, baseline: int) -> None:
    """One claim of up to 100,000 against one problem per claim; then give them back."""
    count = min(problems, CLAIM_PROBLEMS)
    started = time.perf_counter()
    claimed = store.claim("bench-claim", count, 600)
    whole = rate(len(claimed), time.perf_counter() - started)
    assert len(claimed) == count
    del claimed
    started = time.perf_counter()
    for i in range(baseline):
        single.claim(f"one-{i}", 1, 600)
    one_claim = rate(baseline, time.perf_counter() - started)
    print(f"claim:  {whole:10.0f} problems/s in one claim ({count} problems)")
    print(f"claim:  {one_claim:10.0f} problems/s one problem per claim ({baseline} problems)")
    print(f"claim:  {whole / one_claim:10.1f}x the one-at-a-time baseline", flush=True)
    store.release("bench-claim")  # queued again, for the run to drain


def _label(process: psutil.Process) -> str:
    line = " ".join(process.cmdline())
    if "qhopper run" in line or line.endswith("qhopper"):
        return "qhopper run"
    if "spawn_main" in line or "distributed" in line:
        return "dask worker"
    return process.name()


def bench_run(root: Path, problems: int, store: IntakeStore, url: str) -> None:
    config = root / "qhopper.toml"
    config.write_text(
        f"[classical]\ntime_limit_s = 5.0\n[intake]\ndatabase_url = {json.dumps(url)}\n"
    )
    env = {**os.environ, "QHOPPER_HOME": str(root / "home")}
    print(f"run: draining {problems} problems with `qhopper run` ...", flush=True)
    watch = _Watch(problems, store, time.perf_counter())
    process = subprocess.Popen(
        [QHOPPER, "run", "--json", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        current = watch.sample(watched)
        watch.progress(current)
        time.sleep(0.5)
    stdout = process.stdout.read() if process.stdout else b""
    elapsed = time.perf_counter() - watch.started
    if process.returncode != 0:
        raise SystemExit(f"qhopper run failed with {process.returncode}")
    _print_run(json.loads(stdout), elapsed, store, watch)


@dataclass
class _Watch:
    """What a draining run is watched for: each process's peak RSS, when the first answers
    came, and a line of progress every 30 s."""

    problems: int
    store: IntakeStore
    started: float
    peaks: dict[int, tuple[str, int]] = field(default_factory=dict)
    first_answer: float | None = None
    last_report: float = 0.0

    def sample(self, watched: psutil.Process) -> dict[int, tuple[str, int]]:
        """The run's processes' RSS now, by pid; the peaks updated."""
        current: dict[int, tuple[str, int]] = {}
        try:
            for member in [watched, *watched.children(recursive=True)]:
                current[member.pid] = (_label(member), member.memory_info().rss)
        except psutil.Error:
            pass
        for pid, (label, rss) in current.items():
            if rss > self.peaks.get(pid, ("", 0))[1]:
                self.peaks[pid] = (label, rss)
        return current

    def progress(self, current: dict[int, tuple[str, int]]) -> None:
        """Every second until the first answers, then every 30 s: count them and say so."""
        now = time.perf_counter()
        if now - self.last_report < (30 if self.first_answer is not None else 1):
            return
        counts = self.store.counts()
        done = counts["completed"] + counts["degraded"] + counts["failed"]
        since = now - self.started
        if done and self.first_answer is None:
            self.first_answer = since
            print(f"run: first answers written after {self.first_answer:.1f} s", flush=True)
        if since >= 30 and int(since) // 30 != int(self.last_report - self.started) // 30:
            now_mib = {pid: rss // 2**20 for pid, (_, rss) in current.items()}
            print(
                f"run: {since:6.0f} s  {done:8d} / {self.problems} answered  "
                f"RSS now (MiB): {sorted(now_mib.values(), reverse=True)}",
                flush=True,
            )
        self.last_report = now


def _print_run(summary: dict[str, Any], elapsed: float, store: IntakeStore, watch: _Watch) -> None:
    largest_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    counts = store.counts()
    print(
        f"run: {summary['problems']} problems in {elapsed:.0f} s "
        f"({rate(summary['problems'], elapsed):.0f} problems/s end to end), "
        f"{counts['completed']} completed, {counts['degraded']} degraded, {counts['failed']} failed"
    )
    print(f"run: first answers after {watch.first_answer or float('nan'):.1f} s")
    print(f"run: peak RSS {largest_kib / 1024:.0f} MiB (largest single process, getrusage)")
    for pid, (label, rss) in sorted(watch.peaks.items(), key=lambda item: -item[1][1]):
        print(f"run: peak RSS {rss / 2**20:6.0f} MiB  pid {pid:<7} {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=2_000)
    parser.add_argument(
        "--database-url", default=None, help="PostgreSQL server (a fresh schema is made there)"
    )
    parser.add_argument("--no-run", action="store_true", help="measure the intake only")
    args = parser.parse_args()
    dialect = "PostgreSQL" if args.database_url else "SQLite"
    print(f"intake: {dialect}, {args.problems} problems")
    with (
        tempfile.TemporaryDirectory(prefix="qhopper-bench-") as tmp,
        intake_url(Path(tmp), "main", args.database_url) as url,
        intake_url(Path(tmp), "baseline", args.database_url) as baseline_url,
    ):
        root = Path(tmp)
        store, single = IntakeStore.open(url), IntakeStore.open(baseline_url)
        bench_submit(store, single, args.problems, args.baseline)
        if args.database_url is None:
            bench_synchronous(root, args.baseline)
        bench_claim(store, single, args.problems, args.baseline)
        single.close()
        if not args.no_run:
            bench_run(root, args.problems, store, url)
        store.close()


if __name__ == "__main__":
    main()
