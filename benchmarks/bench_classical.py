"""The classical portfolio against published optima, and against plain CP-SAT in the same run.

    make bench-classical         # or: .venv/bin/python benchmarks/bench_classical.py [--quick]

Every MaxCut and QUBO instance with a published optimum in ``data/benchmarks/`` (Biq Mac
MaxCut and QUBO, the CIQuAB Karloff cuts; the QAOA dataset's 2-7 node graphs are left
out: both solvers prove them in milliseconds): 160 instances, n = 20-252. Each instance
is one task in a pool of ``--workers`` processes (one instance at a time per process, as
a Dask worker runs one classical problem per task; the pool is warmed, as the workers'
preload warms them). A task solves the instance with :func:`solve_classical` (the
portfolio), then with :func:`solve_plain` (CP-SAT alone, unhinted, same model, same
limit, one worker each).

Per instance: the answer, the published optimum, the gap to it (``|answer - optimum| /
max(1, |optimum|)``, the rows' own gap formula), CP-SAT's bound, whether proven, the time
to the final answer (``found``) and the wall time, for both solvers. The summary checks the
issue's targets at the limit: every instance up to 250 variables within 0.5 % of its
optimum (0.1 % up to 100), proven wherever plain CP-SAT proves it, no bound on the wrong
side of the optimum, and the portfolio's time within (instances / workers) x limit.

``--quick``: twelve instances (one or two per family) at a 2 s limit, a smoke run of a
minute. ``--max-n 250`` keeps to the targets' sizes; ``--csv FILE`` writes the table.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.classical import ClassicalAnswer, solve_classical, solve_plain, warm_up  # noqa: E402
from pipeline.config import LimitSettings  # noqa: E402
from pipeline.formulation import formulate  # noqa: E402
from pipeline.readers import read_path  # noqa: E402

BENCHMARKS = ROOT / "data" / "benchmarks"
SETS = ("biqmac-maxcut", "biqmac-qubo", "ciquab-karloff-maxcut")
QUICK = (
    "gka/gka1b.sparse",
    "gka/gka9b.sparse",
    "beasley/bqp50-1.sparse",
    "beasley/bqp100-1.sparse",
    "be/be100.1.sparse",
    "Karloff/Karloff_6_3_1.txt",
    "rudy/g05_60.0",
    "rudy/pm1s_80.0",
    "rudy/w01_100.0",
    "ising/t2g10_5555",
    "ising/ising2.5-100_5555",
    "ising/t3g5_5555",
)
QUICK_LIMIT_S = 2.0


def tolerance(n: int) -> float | None:
    """The issue's target: relative gap allowed at ``n`` variables (None: no target)."""
    return 0.001 if n <= 100 else 0.005 if n <= 250 else None


@dataclass(frozen=True)
class Instance:
    folder: str
    name: str
    n: int
    sense: str
    optimum: float


@dataclass(frozen=True)
class Outcome:
    answer: float
    gap: float  # to the published optimum
    bound: float | None
    bound_ok: bool  # on the right side of the optimum (or none)
    proven: bool
    status: str
    found_s: float
    wall_s: float


def instances(max_n: int | None, quick: bool) -> list[Instance]:
    found = []
    for folder in SETS:
        with (BENCHMARKS / folder / "optima.csv").open(newline="") as handle:
            for row in csv.DictReader(handle):
                n = int(row["n_variables"])
                if (max_n is None or n <= max_n) and (not quick or row["instance"] in QUICK):
                    found.append(
                        Instance(
                            folder, row["instance"], n, row["sense"], float(row["optimal_value"])
                        )
                    )
    return found


def outcome(instance: Instance, answer: ClassicalAnswer) -> Outcome:
    slack = 1e-9 * max(1.0, abs(instance.optimum))
    bound_ok = answer.bound is None or (
        answer.bound <= instance.optimum + slack
        if instance.sense == "min"
        else answer.bound >= instance.optimum - slack
    )
    return Outcome(
        answer=answer.objective,
        gap=abs(answer.objective - instance.optimum) / max(1.0, abs(instance.optimum)),
        bound=answer.bound,
        bound_ok=bound_ok,
        proven=answer.proven_optimal,
        status=answer.status,
        found_s=answer.found_s if answer.found_s is not None else answer.wall_s,
        wall_s=answer.wall_s,
    )


def solve(instance: Instance, limit_s: float, plain: bool) -> tuple[Outcome, Outcome | None]:
    """One task: the portfolio, then (if asked) plain CP-SAT, on the same instance."""
    records = read_path(BENCHMARKS / instance.folder / instance.name, LimitSettings())
    assert len(records) == 1 and records[0].spec is not None, records[0].issues
    formulation = formulate(records[0].spec)
    ours = outcome(instance, solve_classical(formulation, limit_s, workers=1, seed=0))
    theirs = (
        outcome(instance, solve_plain(formulation, limit_s, workers=1, seed=0)) if plain else None
    )
    return ours, theirs


def _start_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warm_up()


def _ratio(count: int, total: int) -> str:
    return f"{count}/{total}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=float, default=None, help="seconds per solve (10)")
    parser.add_argument("--workers", type=int, default=2, help="processes (one core each)")
    parser.add_argument("--max-n", type=int, default=None, help="only instances up to this n")
    parser.add_argument("--quick", action="store_true", help="12 instances at a 2 s limit")
    parser.add_argument("--only", default=None, help="only instances whose name matches")
    parser.add_argument("--no-plain", action="store_true", help="skip plain CP-SAT")
    parser.add_argument("--csv", type=Path, default=None, help="write the table here")
    args = parser.parse_args(argv)
    limit = args.limit or (QUICK_LIMIT_S if args.quick else 10.0)
    todo = instances(args.max_n, args.quick)
    if args.only:
        todo = [i for i in todo if re.search(args.only, i.name)]
    plain = not args.no_plain
    console = Console(width=200)
    console.print(
        f"{len(todo)} instances, limit {limit:g} s, {args.workers} workers"
        + (", then plain CP-SAT on each" if plain else "")
    )
    began = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=_start_worker) as pool:
        futures = [pool.submit(solve, instance, limit, plain) for instance in todo]
        results = []
        for instance, future in zip(todo, futures, strict=True):
            ours, theirs = future.result()
            results.append((instance, ours, theirs))
            mark = "ok" if _within(instance, ours) else "OVER"
            console.print(
                f"  {instance.name:32} n={instance.n:3}  gap {100 * ours.gap:7.3f}%  "
                f"{'proven' if ours.proven else '      '}  found {ours.found_s:5.2f}s  {mark}"
                + (f"   plain gap {100 * theirs.gap:7.3f}%" if theirs else ""),
                highlight=False,
            )
    elapsed = time.perf_counter() - began
    console.print(_table(results, plain))
    if args.csv:
        _write_csv(args.csv, results)
    ok = _summary(console, results, limit, args.workers, elapsed, plain)
    return 0 if ok else 1


def _within(instance: Instance, result: Outcome) -> bool:
    allowed = tolerance(instance.n)
    return allowed is None or result.gap <= allowed + 1e-12


def _table(results: list[tuple[Instance, Outcome, Outcome | None]], plain: bool) -> Table:
    table = Table(
        title="Classical portfolio vs published optima" + (" and plain CP-SAT" if plain else "")
    )
    for column in (
        "instance",
        "n",
        "optimum",
        "answer",
        "gap %",
        "bound",
        "proven",
        "found s",
        "wall s",
    ):
        table.add_column(column, justify="left" if column == "instance" else "right")
    if plain:
        for column in (
            "plain answer",
            "plain gap %",
            "plain bound",
            "plain proven",
            "plain found s",
        ):
            table.add_column(column, justify="right")
    for instance, ours, theirs in results:
        row = [
            f"{instance.folder.split('-')[0]}/{instance.name}",
            str(instance.n),
            f"{instance.optimum:g}",
            f"{ours.answer:g}",
            f"{100 * ours.gap:.3f}" + ("" if _within(instance, ours) else " !"),
            "-" if ours.bound is None else f"{ours.bound:g}" + ("" if ours.bound_ok else " !"),
            "yes" if ours.proven else "",
            f"{ours.found_s:.2f}",
            f"{ours.wall_s:.2f}",
        ]
        if theirs is not None:
            row += [
                f"{theirs.answer:g}",
                f"{100 * theirs.gap:.3f}",
                "-" if theirs.bound is None else f"{theirs.bound:g}",
                "yes" if theirs.proven else "",
                f"{theirs.found_s:.2f}",
            ]
        table.add_row(*row)
    return table


def _write_csv(path: Path, results: list[tuple[Instance, Outcome, Outcome | None]]) -> None:
    with path.open("w", newline="") as handle:
        writer: Any = None
        for instance, ours, theirs in results:
            row = {**asdict(instance), **{f"ours_{k}": v for k, v in asdict(ours).items()}}
            if theirs is not None:
                row |= {f"plain_{k}": v for k, v in asdict(theirs).items()}
            if writer is None:
                writer = csv.DictWriter(handle, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)


def _summary(
    console: Console,
    results: list[tuple[Instance, Outcome, Outcome | None]],
    limit: float,
    workers: int,
    elapsed: float,
    plain: bool,
) -> bool:
    targeted = [(i, o, p) for i, o, p in results if tolerance(i.n) is not None]
    within = [i for i, o, _ in targeted if _within(i, o)]
    over = sorted(((o.gap, i) for i, o, _ in targeted if not _within(i, o)), key=lambda t: -t[0])
    proven = sum(o.proven for _, o, _ in results)
    wrong_bounds = [i.name for i, o, _ in results if not o.bound_ok]
    worst = sorted(results, key=lambda r: -r[1].gap)[:3]
    ours_s = sum(o.wall_s for _, o, _ in results)
    budget = len(results) / workers * limit
    lines = [
        f"targets (gap <= 0.1 % up to n = 100, 0.5 % up to 250): "
        f"{_ratio(len(within), len(targeted))} instances within"
        + (f"; over: {', '.join(f'{i.name} {100 * g:.3f}%' for g, i in over)}" if over else ""),
        f"proven optimal: {proven}/{len(results)}; bounds on the wrong side of the optimum: "
        f"{len(wrong_bounds)}" + (f" ({', '.join(wrong_bounds)})" if wrong_bounds else ""),
        "worst gaps: " + ", ".join(f"{i.name} {100 * o.gap:.3f}%" for i, o, _ in worst),
        f"portfolio time: {ours_s:.0f} core-s = {ours_s / workers:.0f} s on {workers} workers, "
        f"budget (instances / workers) x limit = {budget:.0f} s; mean time to the final answer "
        f"{sum(o.found_s for _, o, _ in results) / len(results):.2f} s; "
        f"run elapsed {elapsed:.0f} s" + (" (both solvers)" if plain else ""),
    ]
    missed_proofs: list[str] = []
    if plain:
        theirs = [(i, p) for i, _, p in results if p is not None]
        plain_within = sum(_within(i, p) for i, p in theirs if tolerance(i.n) is not None)
        plain_proven = sum(p.proven for _, p in theirs)
        missed_proofs = [
            i.name for i, o, p in results if p is not None and p.proven and not o.proven
        ]
        mean_ours = sum(o.gap for _, o, _ in results) / len(results)
        mean_plain = sum(p.gap for _, p in theirs) / len(theirs)
        lines.append(
            f"plain CP-SAT: {_ratio(plain_within, len(targeted))} within, {plain_proven} proven, "
            f"mean gap {100 * mean_plain:.3f}% (portfolio {100 * mean_ours:.4f}%); proven by plain "
            f"CP-SAT but not by the portfolio: {len(missed_proofs)}"
            + (f" ({', '.join(missed_proofs)})" if missed_proofs else "")
        )
    ok = not over and not wrong_bounds and not missed_proofs and ours_s / workers <= budget
    lines.append("TARGETS MET" if ok else "TARGETS NOT MET")
    for line in lines:
        console.print(line, highlight=False)
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
