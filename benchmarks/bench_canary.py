"""What a 10 % canary costs a run: the same queue run with and without one, medians of a few.

Submits one queue of MaxCut problems once, then runs copies of that home (the same problem
ids, so the same batches and answers) alternately without and with ``[canary]``, on our
LocalCluster, and prints each run's wall time and the medians. The target: a run with a 10 %
canary at most 10 % slower than without it.

    .venv/bin/python benchmarks/bench_canary.py [--problems 240] [--repeats 3]
        [--candidate aer-noisy:fake_manila] [--fraction 0.1] [--sizes 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from factories import problem  # noqa: E402

from flows.deps import open_deps  # noqa: E402
from flows.run import run_once  # noqa: E402
from pipeline.config_sources import load_settings  # noqa: E402
from pipeline.results import query  # noqa: E402
from pipeline.submit import submit_files  # noqa: E402

SETTINGS = {
    "quantum.max_batch_size": 12,  # enough batches for a 10 % draw to take some
    "dask.inline_below_s": 0.0,  # our LocalCluster, as a run of this size gets anyway
    "dask.n_workers": 2,
}


class CanaryWait(logging.Handler):
    """The seconds the last run waited for its canary at its end (its ``canary`` event)."""

    def __init__(self) -> None:
        super().__init__()
        self.waited_s = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", {})
        if fields.get("event") == "canary":
            self.waited_s = float(fields["waited_s"])


def queued_home(root: Path, problems: int, sizes: list[int]) -> Path:
    home = root / "queued"
    records = [
        problem("maxcut", sizes[i % len(sizes)], seed=i, nonempty=True) for i in range(problems)
    ]
    source = root / "problems.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    submit_files(load_settings(home), [source])
    return home


def timed_run(queued: Path, home: Path, canary: dict[str, object]) -> tuple[float, int, int]:
    """Wall seconds of one run of a copy of ``queued`` (the run's own, without the start of
    the process), its quantum batches and canary rows."""
    shutil.copytree(queued, home)
    settings = load_settings(home, overrides={**SETTINGS, **canary})
    started = time.perf_counter()
    with open_deps(settings) as deps:
        summary = run_once(deps)
    wall = time.perf_counter() - started
    sampled = query(settings.results_location, "SELECT count(*) AS n FROM canary").to_pylist()
    return wall, summary.quantum_batches, int(sampled[0]["n"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--candidate", default="aer-noisy:fake_manila")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5], help="MaxCut nodes")
    args = parser.parse_args()
    canary = {"canary.backend": args.candidate, "canary.fraction": args.fraction}
    wait = CanaryWait()
    logging.getLogger("qhopper.canary").addHandler(wait)
    logging.getLogger("qhopper.canary").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        queued = queued_home(root, args.problems, args.sizes)
        times: dict[str, list[float]] = {"without": [], "with": []}
        for repeat in range(args.repeats):
            for name, options in (("without", {}), ("with", canary)):
                wait.waited_s = 0.0
                wall, batches, rows = timed_run(queued, root / f"{name}-{repeat}", options)
                times[name].append(wall)
                print(
                    f"{name:7} canary: {wall:6.2f} s, {batches} quantum batches, {rows} canary "
                    f"rows, {wait.waited_s:.2f} s of it waiting for them at the end"
                )
        base, with_canary = (statistics.median(times[k]) for k in ("without", "with"))
        print(
            f"median without {base:.2f} s, with a {args.fraction:.0%} canary on {args.candidate} "
            f"{with_canary:.2f} s: {with_canary / base - 1:+.1%}"
        )


if __name__ == "__main__":
    main()
