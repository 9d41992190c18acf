"""Fast-path memory: the peak RSS of one quantum chunk against the engine's own estimate.

    .venv/bin/python benchmarks/bench_memory.py [--sizes 16 18 20 22 24] [--problems 2]

For each size, a fresh Python process builds a chunk of portfolio problems (the worst
case: a linear field, so no flip symmetry; random real weights, so every problem keeps
its 8-byte diagonal; a penalised QUBO, so the true objective is measured apart at the
end), loads the kernels and the template as a warm worker has them, records its RSS
(the baseline), resets the kernel's peak-RSS mark (``/proc/self/clear_refs``) and runs
``pipeline.workers.quantum.run_quantum_chunk`` on Aer: the fast path evaluates and draws the
shots from the exact final state.
The table shows ``fast_path_bytes(n, problems)``, the peak above the baseline, their
ratio (measured / estimate: at most 1 when the estimate holds) and, apart, the peak of
Aer's sampling call alone at the answers' angles (what a backend that samples would add). The optimiser's grid is cut to 2 x 2
and its Newton steps to one, so that 24 qubits finish in about two minutes: every evaluation
allocates the same, so fewer of them do not change the peak. Takes 3-4 minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.backends import Backend
    from pipeline.qaoa.templates import CompiledTemplate
    from pipeline.tasks import Answer, QuantumChunkTask

MiB = 2**20


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        import os

        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not possible here."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(n: int, problems: int) -> dict[str, float]:
    """One measurement, in this (fresh) process."""
    import gc

    from pipeline.qaoa.fast_sim import fast_path_bytes, warm_up
    from pipeline.workers.quantum import run_quantum_chunk

    task, template, backend = _chunk(n, problems)
    warm_up()
    task.template.unpack()
    gc.collect()
    baseline = _rss()
    if not _reset_peak():
        raise SystemExit("cannot reset the peak RSS mark (/proc/self/clear_refs)")
    started = time.perf_counter()
    result = run_quantum_chunk(task)
    seconds = time.perf_counter() - started
    peak = _peak() - baseline
    if result.fallback is not None or len(result.answers) != problems:
        raise SystemExit(f"the chunk did not complete: {result.fallback}")
    return {
        "n": n,
        "problems": problems,
        "estimate": fast_path_bytes(n, problems),
        "measured": peak,
        "aer": _aer_sampling_peak(template, backend, result.answers),
        "seconds": seconds,
    }


def _chunk(n: int, problems: int) -> tuple[QuantumChunkTask, CompiledTemplate, Backend]:
    """A chunk of ``problems`` random portfolios of ``n`` assets (a coarse 2 x 2 grid, one
    refinement step), its template and backend."""
    import numpy as np

    from pipeline.backends import CallPolicy, get_backend
    from pipeline.formulation import formulate
    from pipeline.model import PortfolioSpec
    from pipeline.qaoa import starts
    from pipeline.qaoa.shapes import shape_of
    from pipeline.qaoa.templates import PackedTemplate, compile_template
    from pipeline.tasks import QuantumChunkTask, WorkItem

    starts.GRID_GAMMAS = np.array([0.3, 0.9])
    starts.GRID_BETAS = np.array([-0.4, 0.4])
    backend = get_backend("aer", n)
    rng = np.random.default_rng(n)
    formulations = []
    for _ in range(problems):
        factors = rng.normal(0, 0.2, (n, 3))
        sigma = factors @ factors.T + 0.01 * np.eye(n)
        spec = {
            "kind": "portfolio",
            "mu": rng.uniform(0, 0.2, n).tolist(),
            "sigma": ((sigma + sigma.T) / 2).tolist(),
            "budget": n // 2,
            "risk": 0.5,
        }
        formulations.append(formulate(PortfolioSpec.model_validate(spec)))
    template = compile_template(shape_of(formulations[0].ising, 1, "aer"), backend, "bench")
    task = QuantumChunkTask(
        template=PackedTemplate.pack(template),
        problems=tuple(WorkItem(f"p{b}", f, 256) for b, f in enumerate(formulations)),
        backend_spec="aer",
        max_qubits=n,
        max_iterations=1,
        seed=1,
        policy=CallPolicy(),
    )
    return task, template, backend


def _aer_sampling_peak(
    template: CompiledTemplate, backend: Backend, answers: Sequence[Answer]
) -> int:
    """Aer's sampling alone, at the answers' angles, from a baseline of its own."""
    import gc

    import numpy as np

    from pipeline.backends.base import Primitive, PrimitiveRunner

    problems = len(answers)
    values = template.bind_values(
        np.array([[a.angles[:1]] for a in answers]),
        np.array([[a.angles[1:]] for a in answers]),
        np.zeros((problems, len(template.shape.linear))),
        np.zeros((problems, len(template.shape.pairs))),
    )[:, 0, :]
    gc.collect()
    aer_baseline = _rss()
    _reset_peak()
    runner = backend.runner
    assert isinstance(runner, PrimitiveRunner)  # Aer's: the sampler itself, no job around it
    runner.primitive(Primitive.SAMPLER, 256, 1).run(
        [(template.sampling_circuit, values, 256)]
    ).result()
    return _peak() - aer_baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 18, 20, 22, 24])
    parser.add_argument("--problems", type=int, default=2, help="problems per chunk")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.problems)))
        return
    rows = []
    for n in args.sizes:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", str(n)]
        command += ["--problems", str(args.problems)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        row = rows[-1]
        print(
            f"n={n}: estimate {row['estimate'] / MiB:.1f} MiB, measured {row['measured'] / MiB:.1f}"
            f" MiB, {row['seconds']:.1f} s",
            file=sys.stderr,
        )
    print(f"fast-path chunk of {args.problems} portfolio problems, p=1, Aer sampling 256 shots")
    header = ("n", "estimate MiB", "measured peak MiB", "ratio", "Aer sampling alone MiB", "s")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print(
            f"| {row['n']} | {row['estimate'] / MiB:.1f} | {row['measured'] / MiB:.1f}"
            f" | {row['measured'] / row['estimate']:.2f} | {row['aer'] / MiB:.1f}"
            f" | {row['seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
