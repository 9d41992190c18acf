"""Pipeline overhead: 1,000 mixed problems through `qhopper run` versus the engine alone.

    make bench-pipeline          # or: .venv/bin/python benchmarks/bench_pipeline.py [--problems N]

Both sides do the same work on the same two cores: the engine alone plans the batches
with the pipeline's own planner and runs them in a two-process pool (one single-threaded
process per core, as the Dask workers are) with no queue, no Prefect, no Parquet; the
pipeline runs `qhopper submit` and `qhopper run` as a user would. Overhead is the flow's
own wall time (claim, plan, compile, Dask, writes, journal) over the engine's; process
start-up with Prefect's temporary server, and the LocalCluster start, are reported apart.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from batching.planner import PlannedProblem, plan_batches
from pipeline.backends import get_backend
from pipeline.classical import solve_classical
from pipeline.config import Settings
from pipeline.formulation import formulate
from pipeline.model import ProblemSpec, spec_from_record
from pipeline.qaoa_engine import BatchProblem, optimise_batch
from pipeline.templates import TemplateStore

QHOPPER = str(Path(sys.executable).parent / "qhopper")


def regular_graph(n: int, rng: random.Random) -> list[tuple[int, int]]:
    while True:
        stubs = [v for v in range(n) for _ in range(3)]
        rng.shuffle(stubs)
        edges = {(min(a, b), max(a, b)) for a, b in zip(stubs[::2], stubs[1::2], strict=True)}
        if len(edges) == 3 * n // 2 and all(a != b for a, b in edges):
            return sorted(edges)


def mixed_problems(count: int, seed: int) -> list[dict]:
    """60 % MaxCut on three 12-node graphs, 20 % QUBO on two patterns, 10 % portfolio,
    10 % 30-node MaxCut (too large for the simulator: CP-SAT)."""
    rng = random.Random(seed)
    graphs = [regular_graph(12, rng) for _ in range(3)]
    patterns = [
        [(i, (i + 1) % 10) for i in range(10)] + [(i, (i + 5) % 10) for i in range(5)]
        for _ in range(2)
    ]
    big = regular_graph(30, rng)
    problems: list[dict] = []
    for index in range(count):
        roll = index % 10
        if roll < 6:
            graph = graphs[index % 3]
            problems.append(
                {"kind": "maxcut", "n": 12, "edges": [[u, v, rng.randint(1, 10)] for u, v in graph]}
            )
        elif roll < 8:
            pattern = patterns[index % 2]
            problems.append(
                {
                    "kind": "qubo",
                    "n": 10,
                    "sense": "min",
                    "linear": [[i, rng.randint(-5, 5) or 1] for i in range(10)],
                    "quadratic": [[i, j, rng.randint(-5, 5) or 1] for i, j in pattern],
                }
            )
        elif roll < 9:
            mu = [round(rng.uniform(0, 0.2), 4) for _ in range(8)]
            sigma = [
                [round(0.05 if i == j else 0.01 * ((i * j) % 3 - 1), 4) for j in range(8)]
                for i in range(8)
            ]
            problems.append(
                {"kind": "portfolio", "mu": mu, "sigma": sigma, "budget": 4, "risk": 0.5}
            )
        else:
            problems.append(
                {"kind": "maxcut", "n": 30, "edges": [[u, v, rng.randint(1, 10)] for u, v in big]}
            )
        problems[-1]["key"] = f"bench-{seed}-{index}"
    return problems


def _quantum_chunk(args: tuple) -> int:
    template, records, settings = args
    backend = get_backend(settings.quantum.backend, settings.quantum.max_qubits)
    problems = [
        BatchProblem(str(i), formulate(spec_from_record(r)), settings.quantum.default_shots)
        for i, r in enumerate(records)
    ]
    optimise_batch(
        template, problems, backend, settings.quantum.max_iterations, settings.quantum.seed
    )
    return len(problems)


def _classical_chunk(args: tuple) -> int:
    records, settings = args
    for record in records:
        solve_classical(
            formulate(spec_from_record(record)),
            settings.classical.time_limit_s,
            settings.classical.workers,
            settings.quantum.seed,
        )
    return len(records)


def engine_alone(problems: list[dict], home: Path) -> float:
    """The same batches and chunks as the pipeline, on a two-process pool."""
    settings = Settings(home=home)
    now = datetime.now(UTC).replace(tzinfo=None)
    planned = []
    for index, record in enumerate(problems):
        spec: ProblemSpec = spec_from_record(record)
        planned.append(
            PlannedProblem(
                str(index),
                record["key"],
                spec,
                formulate(spec),
                "",
                1,
                now,
                now,
                spec.reps or settings.quantum.default_reps,
                spec.shots or settings.quantum.default_shots,
            )
        )
    backend = get_backend(settings.quantum.backend, settings.quantum.max_qubits)
    batches = plan_batches(
        planned, settings.quantum.backend, backend.max_qubits, settings.quantum.max_batch_size
    )
    store = TemplateStore(home / "artifacts")
    work: list[tuple] = []
    for batch in batches:
        records = [json.loads(p.spec.model_dump_json(exclude_none=True)) for p in batch.problems]
        if batch.shape is not None:
            template = store.get(batch.shape, backend).template
            half = max(1, min(2, len(records) // 4))
            size = -(-len(records) // half)
            work += [
                ("q", (template, records[i : i + size], settings))
                for i in range(0, len(records), size)
            ]
        else:
            size = settings.classical.chunk_size
            work += [("c", (records[i : i + size], settings)) for i in range(0, len(records), size)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_classical_chunk, [([], settings)] * 2))  # start both processes first
        started = time.perf_counter()
        futures = [
            pool.submit(_quantum_chunk if kind == "q" else _classical_chunk, args)
            for kind, args in work
        ]
        done = sum(f.result() for f in futures)
        elapsed = time.perf_counter() - started
    assert done == len(problems)
    return elapsed


def cluster_start() -> float:
    from flows.dask_client import dask_client

    started = time.perf_counter()
    with dask_client(None, 2):
        elapsed = time.perf_counter() - started
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=1000)
    args = parser.parse_args()
    problems = mixed_problems(args.problems, seed=7)
    with tempfile.TemporaryDirectory(prefix="qhopper-bench-") as scratch:
        root = Path(scratch)
        engine_s = engine_alone(problems, root / "engine-home")
        path = root / "problems.jsonl"
        path.write_text("".join(json.dumps(p) + "\n" for p in problems))
        home = root / "home"
        started = time.perf_counter()
        subprocess.run(
            [QHOPPER, "submit", str(path), "--home", str(home)], check=True, capture_output=True
        )
        submit_s = time.perf_counter() - started
        started = time.perf_counter()
        ran = subprocess.run(
            [QHOPPER, "run", "--json", "--home", str(home)],
            check=True,
            capture_output=True,
            text=True,
        )
        run_wall_s = time.perf_counter() - started
        summary = json.loads(ran.stdout)
        flow_s = summary["t_total_s"]
        dask_s = cluster_start()
    answered = summary["completed"] + summary["degraded"]
    print(
        f"{args.problems} mixed problems (60 % MaxCut-12, 20 % QUBO-10, 10 % portfolio-8, 10 % MaxCut-30)"
    )
    print(
        f"  answered by the pipeline:               {answered} ({summary['degraded']} degraded, {summary['failed']} failed)"
    )
    print(
        f"  batches / templates compiled:           {summary['batches']} / {summary['templates_compiled']}"
    )
    print(f"  engine alone (2 processes):             {engine_s:8.2f} s")
    print(f"  qhopper run, flow wall (t_total_s):     {flow_s:8.2f} s")
    print(
        f"     of which execute / compile / claim:  {summary['t_execute_s']:.2f} / {summary['t_compile_s']:.2f} / "
        f"{summary['t_collect_s']:.2f} s"
    )
    print(
        f"  pipeline overhead vs engine alone:      {(flow_s - engine_s) / engine_s * 100:8.1f} %  (ratio {flow_s / engine_s:.3f})"
    )
    print(
        f"  overhead excluding LocalCluster start:  {(flow_s - dask_s - engine_s) / engine_s * 100:8.1f} %"
    )
    print("  start-up, reported apart:")
    print(f"     process + Prefect temporary server:  {run_wall_s - flow_s:8.2f} s")
    print(f"     LocalCluster (2 workers), measured:  {dask_s:8.2f} s")
    print(f"  qhopper submit ({args.problems} problems):        {submit_s:8.2f} s")


if __name__ == "__main__":
    main()
