"""Milliseconds per QAOA evaluation with QOKit's Python simulator (run in .venv-qokit).

Reads {"n", "edges": [[u, v, w], ...], "reps", "repeats"} as JSON on stdin and prints the
median milliseconds per evaluation (simulate + expectation). QOKit pins an older qiskit,
so it lives in its own environment: `make .venv-qokit`.
"""

import json
import statistics
import sys
import time

import numpy as np
from qokit.fur import choose_simulator

request = json.load(sys.stdin)
simulator = choose_simulator(name="python")(
    request["n"], terms=[(w, (u, v)) for u, v, w in request["edges"]]
)
rng = np.random.default_rng(0)
samples = []
for _ in range(request["repeats"]):
    gammas, betas = rng.uniform(0, 1, request["reps"]), rng.uniform(0, 1, request["reps"])
    started = time.perf_counter()
    simulator.get_expectation(simulator.simulate_qaoa(gammas, betas))
    samples.append(time.perf_counter() - started)
print(statistics.median(samples) * 1e3)
