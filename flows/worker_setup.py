"""Dask worker preload: pay the imports and the kernel loads when the worker starts.

A fresh worker otherwise pays them (Qiskit, Aer, OR-Tools, numba's cached kernels:
seconds) inside its first task, in the middle of the run's execute stage. Our own
LocalCluster starts while the run claims, plans and compiles, so done here they overlap
that work instead of delaying the first batch.
"""

from __future__ import annotations

import gc
from typing import Any


def dask_setup(worker: Any) -> None:
    """Called by Dask in each worker process before it takes work."""
    import pipeline.classical
    import pipeline.workers.quantum
    from pipeline.qaoa.fast_sim import warm_up

    warm_up()
    pipeline.classical.warm_up()  # the tabu search's compiled kernels
    # What start-up built lives as long as the worker: keep the collector's full passes
    # (0.15 s every few runs of a long-lived worker) off it.
    gc.freeze()
