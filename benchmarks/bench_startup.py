"""Start-up: what a user waits for, process start included, against the naive loop.

Measured in one run, each figure the median of ``--repeats`` (default 3), every repeat on
a fresh home:

1. the import floor: a bare interpreter importing qiskit, qiskit-aer, ortools,
   distributed, pyarrow and duckdb (what any process that solves anything pays);
2. ``qhopper run`` with nothing queued;
3. ``qhopper submit`` of one 4-node MaxCut, then ``qhopper run``;
4. 400 weighted 12-node 3-regular MaxCut problems of one shape at p=2: ``submit`` then
   ``run``, against the naive qiskit-algorithms QAOA + COBYLA loop on Aer measured here
   on ``--naive`` of the same problems (seconds per problem times 400).

Targets (issue 10): (2) <= 3 s, (3) <= 5 s, (4) >= 60x the naive loop.
Run: ``make bench-startup`` (installs qiskit-algorithms for the naive loop).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import exact_optimum, naive_loop, problems_of_one_shape

from pipeline.formulation import formulate

QHOPPER = str(Path(sys.executable).parent / "qhopper")
FLOOR = (
    "import qiskit, qiskit_aer, ortools.sat.python.cp_model, distributed, pyarrow.parquet, duckdb"
)
ONE = {"kind": "maxcut", "n": 4, "edges": [[0, 1], [1, 2], [2, 3], [3, 0]]}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=900)
    return time.perf_counter() - started


def qhopper(home: Path, *args: str) -> list[str]:
    return [QHOPPER, *args, "--home", str(home)]


def fresh_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="qhopper-bench-")) / "home"  # does not exist yet


def submit_and_run(problems: Path) -> tuple[float, float, dict[str, object]]:
    home = fresh_home()
    submit_s = timed(qhopper(home, "submit", str(problems)))
    run_s = timed(qhopper(home, "run"))
    row = subprocess.run(
        qhopper(home, "results", "--json", "--sql", "SELECT * FROM runs"),
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    [summary] = json.loads(row.stdout)
    return submit_s, run_s, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive", type=int, default=5, help="problems for the naive loop")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="qhopper-bench-"))
    one = workdir / "one.json"
    one.write_text(json.dumps(ONE))
    specs = problems_of_one_shape(12, 400, seed=2026, integer=False)
    many = workdir / "many.jsonl"
    many.write_text("".join(s.model_dump_json(exclude_none=True) + "\n" for s in specs))

    floor = [timed([sys.executable, "-c", FLOOR]) for _ in range(args.repeats)]
    empty = [timed(qhopper(fresh_home(), "run")) for _ in range(args.repeats)]
    small = [submit_and_run(one) for _ in range(args.repeats)]
    large = [submit_and_run(many) for _ in range(args.repeats)]
    naive_specs = specs[: args.naive]
    naive = naive_loop(naive_specs, [exact_optimum(formulate(s)) for s in naive_specs], reps=2)
    naive_400 = naive.seconds_per_problem * len(specs)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    small_total = median([s + r for s, r, _ in small])
    large_total = median([s + r for s, r, _ in large])
    print(f"medians of {args.repeats}; every repeat on a fresh home")
    print(f"{'measurement':58s} {'seconds':>9s}  note")
    print(
        f"{'import floor (qiskit, aer, ortools, distributed, pyarrow, duckdb)':58s} {median(floor):9.2f}"
    )
    print(f"{'qhopper run, nothing queued':58s} {median(empty):9.2f}  target <= 3 s")
    print(
        f"{'submit one 4-node MaxCut + run it':58s} {small_total:9.2f}  target <= 5 s "
        f"(submit {median([s for s, _, _ in small]):.2f}, run {median([r for _, r, _ in small]):.2f}, "
        f"on {small[0][2]['executor']})"
    )
    print(
        f"{'submit 400 12-node MaxCut p=2 + run them':58s} {large_total:9.2f}  "
        f"(submit {median([s for s, _, _ in large]):.2f}, run {median([r for _, r, _ in large]):.2f}, "
        f"run core {median([float(x['t_total_s']) for _, _, x in large]):.2f}, "  # type: ignore[arg-type]
        f"on {large[0][2]['executor']})"
    )
    print(
        f"{'naive loop, 400 problems (measured on ' + str(args.naive) + ')':58s} {naive_400:9.2f}  "
        f"{naive.seconds_per_problem:.3f} s per problem, expectation ratio {naive.expectation_ratio:.3f}"
    )
    print(
        f"speed-up, 400 problems end to end: {naive_400 / large_total:.1f}x the naive loop (target >= 60x)"
    )


if __name__ == "__main__":
    main()
