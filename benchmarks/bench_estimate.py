"""How well `qhopper run` knows how long it will take: its estimate against the wall clock.

Three workloads, each on a fresh home through the product's own commands (`qhopper submit`,
then `qhopper run --log-format json`, whose "plan" event carries the estimate):

1. small-mixed: 240 MaxCut of 6-12 nodes (quantum) and 60 classical ones of 20-40 nodes;
2. classical-heavy: 16 classical 150-node MaxCut at a 3 s limit, 60 small quantum ones;
3. quantum-heavy: 64 weighted 3-regular MaxCut of 16 nodes at p=2 (one pooled class).

Prints each workload's estimate, the wall time it estimates (from the plan, said once the
run has claimed and routed its first wave, to the run's end: both from the run's own JSON
events), the ratio actual / estimate, and the whole process's time for context; the median
of ``--repeats`` runs (default 1).
Run: ``make bench-estimate``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

QHOPPER = str(Path(sys.executable).parent / "qhopper")


def maxcut(n: int, p: float, rng: random.Random, **extra: Any) -> dict[str, Any]:
    edges = [
        [i, j, rng.randint(1, 5)] for i in range(n) for j in range(i + 1, n) if rng.random() < p
    ]
    return {"kind": "maxcut", "n": n, "edges": edges or [[0, 1, 1]], **extra}


def regular(n: int, rng: random.Random) -> dict[str, Any]:
    """A 3-regular graph by the pairing model, retried until simple."""
    while True:
        stubs = [v for v in range(n) for _ in range(3)]
        rng.shuffle(stubs)
        pairs = {tuple(sorted(stubs[i : i + 2])) for i in range(0, len(stubs), 2)}
        if len(pairs) == 3 * n // 2 and all(a != b for a, b in pairs):
            edges = [[a, b, round(rng.uniform(0.1, 2), 3)] for a, b in sorted(pairs)]
            return {"kind": "maxcut", "n": n, "edges": edges, "reps": 2}


def small_mixed(rng: random.Random) -> tuple[list[dict[str, Any]], str]:
    quantum = [maxcut(rng.randint(6, 12), 0.4, rng) for _ in range(240)]
    classical = [maxcut(rng.randint(20, 40), 0.2, rng, route="classical") for _ in range(60)]
    return quantum + classical, ""


def classical_heavy(rng: random.Random) -> tuple[list[dict[str, Any]], str]:
    large = [maxcut(150, 0.1, rng, route="classical") for _ in range(16)]
    small = [maxcut(rng.randint(6, 10), 0.4, rng) for _ in range(60)]
    return large + small, "[classical]\ntime_limit_s = 3\n"


def quantum_heavy(rng: random.Random) -> tuple[list[dict[str, Any]], str]:
    return [regular(16, rng) for _ in range(64)], ""


WORKLOADS: dict[str, Callable[[random.Random], tuple[list[dict[str, Any]], str]]] = {
    "small-mixed": small_mixed,
    "classical-heavy": classical_heavy,
    "quantum-heavy": quantum_heavy,
}


def measure(name: str, seed: int) -> tuple[float, float, float, str]:
    """(estimated s, actual s from the plan to the run's end, the process's s, the plan line)
    of one fresh run of ``name``."""
    records, config = WORKLOADS[name](random.Random(seed))
    with tempfile.TemporaryDirectory(prefix="qhopper-estimate-") as scratch:
        root = Path(scratch)
        (root / "qhopper.toml").write_text(config)
        source = root / "problems.jsonl"
        source.write_text(
            "".join(json.dumps(r | {"key": f"{name}-{i}"}) + "\n" for i, r in enumerate(records))
        )
        common = ["--home", str(root / "home"), "--config", str(root / "qhopper.toml")]
        subprocess.run([QHOPPER, "submit", str(source), *common], check=True, capture_output=True)
        started = time.perf_counter()
        done = subprocess.run(
            [QHOPPER, "--log-format", "json", "run", *common],
            check=True,
            capture_output=True,
            text=True,
        )
        process = time.perf_counter() - started
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    plan = next(e for e in events if e.get("event") == "plan")
    end = next(e for e in events if e.get("event") == "run")
    actual = (
        datetime.fromisoformat(end["time"]) - datetime.fromisoformat(plan["time"])
    ).total_seconds()
    return float(plan["estimated_s"]), actual, process, plan["message"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", choices=sorted(WORKLOADS))
    args = parser.parse_args()
    print(
        f"{'workload':<16} {'estimated s':>12} {'actual s':>10} {'actual/estimate':>16} "
        f"{'process s':>10}"
    )
    for name in [args.only] if args.only else WORKLOADS:
        runs = [measure(name, seed) for seed in range(args.repeats)]
        estimated, actual, process = (statistics.median(r[i] for r in runs) for i in range(3))
        print(
            f"{name:<16} {estimated:>12.1f} {actual:>10.1f} {actual / estimated:>16.2f} "
            f"{process:>10.1f}"
        )
        print(f"  {runs[0][3]}")


if __name__ == "__main__":
    main()
