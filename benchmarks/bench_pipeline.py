"""Pipeline overhead: 1,000 mixed problems through `qhopper run` versus the engine alone.

    make bench-pipeline          # or: .venv/bin/python benchmarks/bench_pipeline.py [--problems N]

Both sides do the same work on the same two cores: the engine alone plans the batches
with the pipeline's own planner, compiles one template per shape into a fresh store and
runs the chunks in a two-process pool (one single-threaded process per core, as the Dask
workers are; started and warmed before the clock starts) with no queue, no Prefect, no
Dask, no Parquet, in a fresh Python process each time, as each `qhopper run` is. The
pipeline runs `qhopper submit` and `qhopper run` as a user would. Overhead is the flow's
wall time (claim, plan, compile, Dask, writes, journal) over the engine's.

The pipeline runs in three set-ups per repeat:
- as `qhopper serve` runs it: a Prefect server already running (PREFECT_API_URL) and a
  warm LocalCluster (--dask-address);
- a warm LocalCluster and Prefect's temporary server, which `qhopper run` starts itself
  when no PREFECT_API_URL is set (its first minutes of work land inside the run);
- cold: the temporary server and a LocalCluster the run starts itself.
Start-up is reported apart: the process with Prefect's temporary server, and the part
of the cluster's start the run still waited for after routing (the cluster starts beside
planning and compiling). Each set-up runs --repeats times, alternating with the engine;
the figures are medians, and the overhead is also given as the median of the ratios
within each repeat (neighbouring runs share the machine's mood).

--pool-only: MaxCut on a distinct random graph each against one graph per size, through
`qhopper run` on fresh homes (pooling by class: target at most 2x per problem).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from batching.batch_sizes import BatchSizes
from batching.batches import PlannedProblem
from batching.planner import plan_batches
from flows.compute import local_cluster
from flows.prefect_env import configure_prefect
from flows.serve import prefect_api
from pipeline.backends import get_backend
from pipeline.classical import solve_classical
from pipeline.config import Settings
from pipeline.formulation import formulate
from pipeline.model import ProblemSpec, spec_from_record
from pipeline.qaoa.evaluators import BatchProblem, uses_fast_path
from pipeline.qaoa.fast_sim import warm_up
from pipeline.qaoa.lockstep import optimise_batch
from pipeline.qaoa.templates import TemplateStore
from pipeline.results import query

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


def pool_problems(count: int, distinct: bool, seed: int) -> list[dict]:
    """MaxCut on random G(n, 0.4) graphs, n = 10..14 in equal shares, weights 1-10: each
    problem on its own graph (``distinct``), or every problem of a size on one graph."""
    rng = random.Random(seed)
    graphs: dict[int, list[tuple[int, int]]] = {}  # the size's one graph, or its latest
    seen: set[tuple[tuple[int, int], ...]] = set()
    problems: list[dict] = []
    for index in range(count):
        n = 10 + index % 5
        while n not in graphs or (distinct and tuple(graphs[n]) in seen):
            graphs[n] = [(u, v) for u in range(n) for v in range(u + 1, n) if rng.random() < 0.4]
        seen.add(tuple(graphs[n]))
        weighted = [[u, v, rng.randint(1, 10)] for u, v in graphs[n]]
        problems.append({"kind": "maxcut", "n": n, "edges": weighted, "key": f"pool-{index}"})
    return problems


def pool_comparison(count: int, repeats: int) -> None:
    """Distinct graphs against one graph per size, each through `qhopper run` on a fresh home:
    seconds a problem, batches, and the answers' quality (expectation over the exact optimum)."""
    runs: dict[bool, list[tuple[float, dict, dict]]] = {False: [], True: []}
    quality = "SELECT avg(expected_objective / reference_objective) AS ratio,"
    quality += " avg(evaluations) AS evaluations FROM problems"
    with tempfile.TemporaryDirectory(prefix="qhopper-bench-pool-") as scratch:
        root = Path(scratch)
        configure_prefect(root)
        for repeat in range(repeats):
            for distinct in (False, True):
                path = root / f"{distinct}-{repeat}.jsonl"
                problems = pool_problems(count, distinct, seed=11 + repeat)
                path.write_text("".join(json.dumps(p) + "\n" for p in problems))
                _, wall, summary = pipeline_run(path, root / path.stem, None, None)
                [judged] = query(root / path.stem / "results", quality).to_pylist()
                runs[distinct].append((wall, summary, judged))
    print(f"{count} MaxCut problems, n = 10..14 in equal shares, G(n, 0.4), weights 1-10")
    per_problem = {}
    for distinct, label in ((False, "one graph per size"), (True, "a distinct graph each")):
        flows = [s["t_total_s"] for _, s, _ in runs[distinct]]
        per_problem[distinct] = statistics.median(flows) / count
        _, last, judged = runs[distinct][-1]
        print(
            f"  {label}: {1e3 * per_problem[distinct]:.2f} ms a problem (flow {_spread(flows)} s;"
            f" process wall {statistics.median(w for w, _, _ in runs[distinct]):.2f} s)\n"
            f"     {last['quantum_batches']} quantum batches of {last['batches']},"
            f" {last['problems_per_batch']:.1f} problems a batch; templates compiled"
            f" {last['templates_compiled']} ({last['t_compile_s']:.2f} s); plan / execute"
            f" {last['t_plan_s']:.2f} / {last['t_execute_s']:.2f} s on {last['executor']}\n"
            f"     {last['completed']} completed, {last['degraded']} degraded; expectation ratio"
            f" {judged['ratio']:.4f}, {judged['evaluations']:.1f} evaluations a problem"
        )
    pairs = zip(runs[False], runs[True], strict=True)  # neighbouring runs share the machine's mood
    paired = statistics.median(d["t_total_s"] / s["t_total_s"] for (_, s, _), (_, d, _) in pairs)
    print(
        f"  distinct graphs / one graph, per problem: {per_problem[True] / per_problem[False]:.2f}x"
        f" (median of the per-repeat ratios {paired:.2f}x; target <= 2x)"
    )


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
    """Plan, compile and optimise the same batches and chunks as the pipeline, on a pool."""
    settings = Settings(home=home)
    warm_up()  # the pool's processes fork from here: warm, as the Dask workers' preload makes them
    gc.freeze()  # as the workers' preload and the flow freeze their start-up heaps
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_classical_chunk, [([], settings)] * 2))  # start both processes first
        started = time.perf_counter()
        now = datetime.now(UTC).replace(tzinfo=None)
        planned = []
        for index, record in enumerate(problems):
            spec: ProblemSpec = spec_from_record(record)
            reps = spec.reps or settings.quantum.default_reps
            shots = spec.shots or settings.quantum.default_shots
            planned.append(
                PlannedProblem(
                    str(index), record["key"], spec, formulate(spec), "", 1, now, now, reps, shots
                )
            )
        backend = get_backend(settings.quantum.backend, settings.quantum.max_qubits)
        batches = plan_batches(
            planned,
            backend.name,
            backend.target.why_not,
            BatchSizes(backend, settings),
            pooled=lambda n: uses_fast_path(backend, n),  # as the run core plans them
        )
        store = TemplateStore(home / "artifacts")
        futures = []
        for batch in batches:
            records = [
                json.loads(p.spec.model_dump_json(exclude_none=True)) for p in batch.problems
            ]
            if batch.shape is not None:
                template = store.get(batch.shape, backend).template
                half = max(1, min(2, len(records) // 4))
                size = -(-len(records) // half)
                futures += [
                    pool.submit(_quantum_chunk, (template, records[i : i + size], settings))
                    for i in range(0, len(records), size)
                ]
            else:
                size = 1  # one problem per task, as the run core sends them
                futures += [
                    pool.submit(_classical_chunk, (records[i : i + size], settings))
                    for i in range(0, len(records), size)
                ]
        done = sum(f.result() for f in futures)
        elapsed = time.perf_counter() - started
    assert done == len(problems)
    return elapsed


def engine_in_fresh_process(count: int, home: Path) -> float:
    """The engine alone in a new Python process, which pays its lazy imports (Qiskit, Aer,
    numba's kernels) inside the clock as a fresh `qhopper run` does."""
    measured = subprocess.run(
        [sys.executable, __file__, "--problems", str(count), "--engine-home", str(home)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(measured.stdout)


def pipeline_run(
    path: Path, home: Path, dask_address: str | None, api_url: str | None
) -> tuple[float, float, dict]:
    """`qhopper submit` then `qhopper run`: submit seconds, run wall seconds, run summary.

    With ``api_url`` the run reports to that Prefect server; without, it starts Prefect's
    temporary server as a plain `qhopper run` does.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    started = time.perf_counter()
    subprocess.run(
        [QHOPPER, "submit", str(path), "--home", str(home)],
        check=True,
        capture_output=True,
        env=env,
    )
    submit_s = time.perf_counter() - started
    command = [QHOPPER, "run", "--json", "--home", str(home)]
    if dask_address:
        command += ["--dask-address", dask_address]
    started = time.perf_counter()
    ran = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    summary = json.loads(ran.stdout)
    assert summary["completed"] + summary["degraded"] == summary["problems"], summary
    return submit_s, time.perf_counter() - started, summary


Run = tuple[float, float, dict]  # submit seconds, run wall seconds, the run's summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--engine-home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--pool-only",
        action="store_true",
        help="only compare distinct graphs with one graph per size (--problems, --repeats)",
    )
    args = parser.parse_args()
    if args.pool_only:
        pool_comparison(args.problems, args.repeats)
        return
    problems = mixed_problems(args.problems, seed=7)
    if args.engine_home:  # one engine-alone measurement, in a fresh process like `qhopper run`
        print(engine_alone(problems, args.engine_home))
        return
    engine, served, warm, cold = _measure(problems, args.repeats)
    print(
        f"{args.problems} mixed problems (60 % MaxCut-12, 20 % QUBO-10, 10 % portfolio-8,"
        f" 10 % MaxCut-30); medians of {args.repeats} runs each, alternating"
    )
    last = served[-1][2]
    print(
        f"  answered by every pipeline run:         {last['completed'] + last['degraded']}"
        f" ({last['degraded']} degraded, {last['failed']} failed)"
    )
    print(
        f"  batches / templates compiled:           {last['batches']} / {last['templates_compiled']}"
    )
    engine_s = statistics.median(engine)
    print(f"  engine alone (plan+compile+optimise):   {engine_s:8.2f} s   {_spread(engine)}")
    for label, runs in (
        ("qhopper run as serve runs it (Prefect server running, warm cluster)", served),
        ("qhopper run on a warm cluster, Prefect's temporary server", warm),
        ("qhopper run, cold (temporary server, starts its own LocalCluster)", cold),
    ):
        _print_runs(label, runs, engine)
    print(
        f"  qhopper submit ({args.problems} problems):        "
        f"{statistics.median([submit for submit, _, _ in served + warm + cold]):8.2f} s"
    )


def _measure(
    problems: list[dict], repeats: int
) -> tuple[list[float], list[Run], list[Run], list[Run]]:
    """Each repeat, alternating: the engine alone, then qhopper run as serve runs it, on a
    warm cluster with Prefect's temporary server, and cold."""
    engine: list[float] = []
    served: list[Run] = []
    warm: list[Run] = []
    cold: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="qhopper-bench-") as scratch,
        local_cluster(2) as client,
    ):
        address = str(client.scheduler_info()["address"])
        root = Path(scratch)
        configure_prefect(root)  # the server's home, analytics off
        path = root / "problems.jsonl"
        path.write_text("".join(json.dumps(p) + "\n" for p in problems))
        with prefect_api(root, Console(stderr=True)) as api_url:
            for repeat in range(repeats):
                engine.append(engine_in_fresh_process(len(problems), root / f"engine-{repeat}"))
                served.append(pipeline_run(path, root / f"served-{repeat}", address, api_url))
                warm.append(pipeline_run(path, root / f"warm-{repeat}", address, None))
                cold.append(pipeline_run(path, root / f"cold-{repeat}", None, None))
    return engine, served, warm, cold


def _print_runs(label: str, runs: list[Run], engine: list[float]) -> None:
    """One way of running: the flow's wall, its stages, and its overhead over the engine."""
    engine_s = statistics.median(engine)
    summaries = [summary for _, _, summary in runs]
    flow = [s["t_total_s"] for s in summaries]
    wait = [s["t_cluster_wait_s"] for s in summaries]
    own = [f - w for f, w in zip(flow, wait, strict=True)]
    own_s = statistics.median(own)

    def stage(name: str) -> float:
        return statistics.median([s[f"t_{name}_s"] for s in summaries])

    print(f"  {label}")
    print(
        f"     flow wall (t_total_s):               {statistics.median(flow):8.2f} s   {_spread(flow)}"
    )
    print(
        "     plan / compile / execute:            "
        f"{stage('plan'):.2f} / {stage('compile'):.2f} (beside execute) / {stage('execute'):.2f} s"
    )
    print(
        f"     waiting for the cluster to start:    {statistics.median(wait):8.2f} s   (start-up)"
    )
    print(f"     flow without that start-up:          {own_s:8.2f} s   {_spread(own)}")
    paired = statistics.median(o / e for o, e in zip(own, engine, strict=True))
    print(
        f"     overhead vs engine alone:            {(own_s - engine_s) / engine_s * 100:8.1f} %"
        f"   (ratio of medians {own_s / engine_s:.3f};"
        f" median of the per-repeat ratios {paired:.3f})"
    )
    print(
        "     process start, Prefect connection or temporary server, cluster shutdown, apart: "
        f"{statistics.median([wall - s['t_total_s'] for _, wall, s in runs]):.2f} s"
    )


def _spread(values: list[float]) -> str:
    return "(runs: " + ", ".join(f"{v:.2f}" for v in values) + ")"


if __name__ == "__main__":
    main()
