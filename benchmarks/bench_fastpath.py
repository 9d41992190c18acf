"""Bigger problems on the fast path: time per evaluation and peak memory, n = 12..24, p = 1..3.

    make bench-fastpath          # or: .venv/bin/python benchmarks/bench_fastpath.py [--quick]

Every (n, p) cell is one weighted 3-regular MaxCut (graph and weights uniform in
[0.1, 1] seeded by n, as bench_engine.py draws them; real weights, so the fast path
keeps an 8-byte diagonal, not a 2-byte level index: its worst case for memory), run
two ways, each in a fresh Python process, single-threaded as a Dask worker is
(``flows.compute.SINGLE_THREAD_ENV``):

* the fast path: ``DiagonalEvaluator`` as the engine builds it (a compiled template,
  normalised weights), one angle set per call; the first call, which also builds the
  problem's diagonal, is timed apart ("first call"), then the median of the repeats
  ("ms/eval"); then the shots are drawn from the exact final state
  (``pipeline.qaoa.sampling.draw``, ``default_shots`` shots), the engine's last step;
* QOKit's CPU simulator from its own environment (``make .venv-qokit``) via
  ``qokit_eval.py``: building the simulator (it precomputes the cost diagonal) is
  "setup", then the median of ``simulate_qaoa`` + ``get_expectation``. It is QOKit's
  ``python`` simulator: the C one is not buildable from PyPI (qokit 0.1.4's wheel and
  sdist ship its .c files without their headers). That one applies each mixer as a
  Python loop over the amplitudes (~0.85 s a layer at n=16, x4 per 2 qubits), so it is
  run up to ``--qokit-max-n`` (20) only, with fewer repeats; beyond, its figures are
  extrapolated from the largest measured n at the same p (time by n 2^n, memory by
  2^n) and marked ``~``: not measurements.

Memory: the peak resident set above the process's own baseline, read from the kernel's
high-water mark (``VmHWM`` in /proc/self/status) after resetting it
(``/proc/self/clear_refs``) once imports, kernels and template are loaded and before the
problem's data exist: what the problem itself costs a worker (the same method as
bench_memory.py); "eval peak" once the evaluations are done, "peak" after the draw too.
Beside it ``fast_path_bytes(n, 1)`` (pipeline.memory), the estimate the router
checks against ``routing.simulator_memory_bytes`` (it assumes no flip symmetry, the
worst case); peak/estimate above 1 means the estimate does not hold. "one problem s" is
the first call, ``TYPICAL_EVALUATIONS - 1`` (batching.economics) more evaluations and the
draw: one problem's refinement at the router's typical evaluation count. Repeats shrink with n so
that the whole run takes 5-10 minutes on 2 cores; ratios are taken within the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MiB = 2**20
ROOT = Path(__file__).resolve().parent.parent
QOKIT_PYTHON = ROOT / ".venv-qokit" / "bin" / "python"
SIZES = (12, 14, 16, 18, 20, 22, 24)
DEPTHS = (1, 2, 3)


def repeats_for(n: int) -> int:
    """Timed evaluations per cell: many where they are cheap, few where each takes seconds."""
    return 15 if n <= 16 else 9 if n <= 20 else 5


# -- measuring in this process -----------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError as error:
        raise SystemExit(f"cannot reset the peak RSS mark: {error}") from error


def _peak() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def maxcut_edges(n: int) -> list[list[float]]:
    """The cell's problem, drawn as bench_engine.py draws its own: a random 3-regular graph
    and weights uniform in [0.1, 1], seeded by n."""
    rng = random.Random(n)
    while True:
        stubs = [v for v in range(n) for _ in range(3)]
        rng.shuffle(stubs)
        edges = {(min(a, b), max(a, b)) for a, b in zip(stubs[::2], stubs[1::2], strict=True)}
        if len(edges) == n * 3 // 2 and all(a != b for a, b in edges):
            return [[u, v, round(rng.uniform(0.1, 1.0), 6)] for u, v in sorted(edges)]


def fast_child(n: int, reps: int, repeats: int) -> dict[str, float]:
    """One fast-path cell, measured in this (fresh) process."""
    import gc
    import statistics

    import numpy as np

    from pipeline.backends import get_backend
    from pipeline.config import Settings
    from pipeline.formulation import formulate
    from pipeline.memory import fast_path_bytes
    from pipeline.model import MaxCutSpec
    from pipeline.qaoa.evaluators import BatchProblem, DiagonalEvaluator, as_caller
    from pipeline.qaoa.fast_sim import warm_up
    from pipeline.qaoa.sampling import draw
    from pipeline.qaoa.shapes import shape_of
    from pipeline.qaoa.templates import compile_template

    backend = get_backend("aer", n)
    edges = maxcut_edges(n)
    formulation = formulate(MaxCutSpec.model_validate({"kind": "maxcut", "n": n, "edges": edges}))
    template = compile_template(
        shape_of(formulation.ising, reps, backend.target.label), backend, "b"
    )
    problems = [BatchProblem("p", formulation, Settings().quantum.default_shots)]
    rng = np.random.default_rng(0)
    angles = [rng.uniform(0, 1, (2, 1, 1, reps)) for _ in range(repeats + 1)]
    rows = np.arange(1)
    warm_up()
    gc.collect()
    baseline = _rss()
    _reset_peak()
    started = time.perf_counter()
    evaluator = DiagonalEvaluator(template, problems)
    evaluator.energies(rows, angles[0][0], angles[0][1])  # builds the diagonal
    first_s = time.perf_counter() - started
    samples = []
    for gammas, betas in angles[1:]:
        started = time.perf_counter()
        evaluator.energies(rows, gammas, betas)
        samples.append(time.perf_counter() - started)
    eval_peak = _peak() - baseline
    started = time.perf_counter()
    draw(evaluator, problems, as_caller(backend), angles[0][0][:, 0], angles[0][1][:, 0], 1)
    draw_s = time.perf_counter() - started
    return {
        "ms": statistics.median(samples) * 1e3,
        "first_s": first_s,
        "draw_s": draw_s,
        "eval_peak": eval_peak,
        "peak": _peak() - baseline,
        "estimate": fast_path_bytes(n, 1),
    }


# -- the run -----------------------------------------------------------------------------------
def _child_env() -> dict[str, str]:
    from flows.compute import SINGLE_THREAD_ENV

    return {**os.environ, **SINGLE_THREAD_ENV}


def fast_cell(n: int, reps: int, repeats: int) -> dict[str, float]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(n), str(reps)]
    completed = subprocess.run(
        [*command, str(repeats)], capture_output=True, text=True, env=_child_env(), check=False
    )
    if completed.returncode != 0:
        raise SystemExit(f"fast path n={n} p={reps} failed:\n{completed.stderr[-3000:]}")
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def qokit_cell(n: int, reps: int, repeats: int) -> dict[str, float]:
    """QOKit's figures for the same problem, measured in its own environment."""
    request = {"n": n, "edges": maxcut_edges(n), "reps": reps, "repeats": repeats, "detail": True}
    completed = subprocess.run(
        [str(QOKIT_PYTHON), str(Path(__file__).with_name("qokit_eval.py"))],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=900,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"QOKit n={n} p={reps} failed:\n{completed.stderr[-3000:]}")
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def qokit_repeats(n: int) -> int:
    """QOKit's Python loop takes seconds an evaluation from n=18: one timed call there."""
    return 9 if n <= 12 else 5 if n <= 14 else 3 if n <= 16 else 1


def extrapolated(measured: dict[str, Any], n: int) -> dict[str, Any]:
    """QOKit at ``n`` from a measured row at the same p: time ~ n 2^n, memory ~ 2^n."""
    scale = 2.0 ** (n - measured["n"])
    qokit = measured["qokit"]
    return {
        "ms": qokit["ms"] * scale * n / measured["n"],
        "setup_s": qokit["setup_s"] * scale,
        "peak": qokit["peak"] * scale,
        "extrapolated": True,
    }


def _figure(qokit: dict[str, Any] | None, key: str, digits: int, divisor: float = 1.0) -> str:
    if qokit is None:
        return "-"
    return ("~" if qokit.get("extrapolated") else "") + f"{qokit[key] / divisor:.{digits}f}"


def _ratio(value: float, qokit: dict[str, Any] | None, key: str) -> str:
    if qokit is None or not qokit[key]:
        return "-"
    return ("~" if qokit.get("extrapolated") else "") + f"{value / qokit[key]:.2g}"


def one_problem_s(fast: dict[str, float], evaluations: int) -> float:
    return fast["first_s"] + (evaluations - 1) * fast["ms"] / 1e3 + fast["draw_s"]


def table(rows: list[dict[str, Any]], evaluations: int) -> list[str]:
    header = (
        "n",
        "p",
        "fast ms/eval",
        "QOKit ms/eval",
        "fast/QOKit time",
        "fast first call s",
        "draw s",
        f"one problem s ({evaluations} evals)",
        "fast eval peak MiB",
        "fast peak MiB",
        "estimate MiB",
        "peak/estimate",
        "QOKit setup s",
        "QOKit peak MiB",
        "fast/QOKit memory",
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        fast, qokit = row["fast"], row["qokit"]
        cells = (
            str(row["n"]),
            str(row["p"]),
            f"{fast['ms']:.3f}",
            _figure(qokit, "ms", 1),
            _ratio(fast["ms"], qokit, "ms"),
            f"{fast['first_s']:.3f}",
            f"{fast['draw_s']:.3f}",
            f"{one_problem_s(fast, evaluations):.2f}",
            f"{fast['eval_peak'] / MiB:.1f}",
            f"{fast['peak'] / MiB:.1f}",
            f"{fast['estimate'] / MiB:.1f}",
            f"{fast['peak'] / fast['estimate']:.2f}",
            _figure(qokit, "setup_s", 2),
            _figure(qokit, "peak", 1, MiB),
            _ratio(fast["peak"], qokit, "peak"),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def largest_within(
    rows: list[dict[str, Any]], reps: int, evaluations: int, seconds: float, memory: int
) -> int:
    """The largest n whose one problem at depth ``reps`` takes at most ``seconds`` and whose
    estimate fits ``memory``, every smaller measured n within both too (0: none)."""
    best = 0
    for row in sorted((r for r in rows if r["p"] == reps), key=lambda r: int(r["n"])):
        fast = row["fast"]
        if one_problem_s(fast, evaluations) > seconds or fast["estimate"] > memory:
            break
        best = row["n"]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="n = 12, 16 at p = 1, 2 only")
    parser.add_argument(
        "--qokit-max-n", type=int, default=20, help="largest n QOKit is run at (default 20)"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="one problem's time limit in the summary"
    )
    parser.add_argument("--child", type=int, nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(fast_child(*args.child)))
        return
    sizes, depths = ((12, 16), (1, 2)) if args.quick else (SIZES, DEPTHS)
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = _measure(sizes, depths, args.qokit_max_n, started)
    load_after = os.getloadavg()
    print(
        "Fast path vs QOKit's CPU (Python) simulator: one weighted 3-regular MaxCut per cell,"
        " single-threaded, a fresh process per side and cell"
    )
    print(
        f"{platform.machine()}, {os.cpu_count()} cores; load average {load_before[0]:.2f}"
        f" before, {load_after[0]:.2f} after; {time.perf_counter() - started:.0f} s in all"
    )
    _print_results(rows, sizes, depths, args.qokit_max_n, args.seconds)


def _measure(
    sizes: Sequence[int], depths: Sequence[int], qokit_max_n: int, started: float
) -> list[dict[str, Any]]:
    """Each cell: the fast path, and QOKit where it is installed (measured up to
    ``qokit_max_n``, extrapolated above)."""
    rows: list[dict[str, Any]] = []
    for n in sizes:
        for reps in depths:
            row: dict[str, Any] = {"n": n, "p": reps, "fast": fast_cell(n, reps, repeats_for(n))}
            row["qokit"] = None
            if QOKIT_PYTHON.exists():
                measured = [
                    r for r in rows if r["p"] == reps and not r["qokit"].get("extrapolated")
                ]
                if n <= qokit_max_n or not measured:
                    row["qokit"] = qokit_cell(n, reps, qokit_repeats(n))
                else:
                    row["qokit"] = extrapolated(measured[-1], n)
            rows.append(row)
            print(
                f"n={n} p={reps}: fast {row['fast']['ms']:.3f} ms/eval, QOKit"
                f" {_figure(row['qokit'], 'ms', 1)} ms/eval"
                f" ({time.perf_counter() - started:.0f} s so far)",
                file=sys.stderr,
                flush=True,
            )
    return rows


def _print_results(
    rows: list[dict[str, Any]],
    sizes: Sequence[int],
    depths: Sequence[int],
    qokit_max_n: int,
    seconds: float,
) -> None:
    """The table, and the largest size each depth allows against the defaults."""
    from batching.economics import TYPICAL_EVALUATIONS
    from pipeline.config import Settings

    settings = Settings()
    print(
        "repeats (fast, QOKit): "
        + ", ".join(f"n={n}: {repeats_for(n)}, {qokit_repeats(n)}" for n in sizes)
    )
    if not QOKIT_PYTHON.exists():
        print("QOKit not measured: run `make .venv-qokit` first")
    elif any(n > qokit_max_n for n in sizes):
        print(f"~: QOKit not run above n={qokit_max_n}, extrapolated (not measured)")
    print("\n".join(table(rows, TYPICAL_EVALUATIONS)))
    budget = settings.routing.simulator_memory_bytes
    for reps in depths:
        largest = largest_within(rows, reps, TYPICAL_EVALUATIONS, seconds, budget)
        print(
            f"p={reps}: largest n with one problem <= {seconds:g} s and the estimate within"
            f" routing.simulator_memory_bytes ({budget / MiB:.0f} MiB): {largest or 'none'}"
        )
    print(
        f"quantum.max_qubits (default {settings.quantum.max_qubits}),"
        f" default_reps {settings.quantum.default_reps}"
    )


if __name__ == "__main__":
    main()
