"""Milliseconds per QAOA evaluation with QOKit's Python simulator (run in .venv-qokit).

Reads {"n", "edges": [[u, v, w], ...], "reps", "repeats"} as JSON on stdin and prints the
median milliseconds per evaluation (simulate + expectation). QOKit pins an older qiskit,
so it lives in its own environment: `make .venv-qokit`.

With "detail": true in the request it prints JSON instead: {"ms", "setup_s" (building the
simulator, which precomputes the cost diagonal), "peak" (bytes: the peak RSS above the
baseline after imports, from VmHWM reset through /proc/self/clear_refs, as
bench_fastpath.py measures the fast path)}.
"""

import gc
import json
import os
import statistics
import sys
import time

import numpy as np
from qokit.fur import choose_simulator


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


request = json.load(sys.stdin)
detail = request.get("detail", False)
rng = np.random.default_rng(0)
angles = [rng.uniform(0, 1, (2, request["reps"])) for _ in range(request["repeats"])]
terms = [(w, (u, v)) for u, v, w in request["edges"]]
gc.collect()
baseline = rss()
if detail:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
started = time.perf_counter()
simulator = choose_simulator(name="python")(request["n"], terms=terms)
setup_s = time.perf_counter() - started
samples = []
for gammas, betas in angles:
    started = time.perf_counter()
    simulator.get_expectation(simulator.simulate_qaoa(gammas, betas))
    samples.append(time.perf_counter() - started)
if detail:
    result = {"ms": statistics.median(samples) * 1e3, "setup_s": setup_s, "peak": peak() - baseline}
    print(json.dumps(result))
else:
    print(statistics.median(samples) * 1e3)
