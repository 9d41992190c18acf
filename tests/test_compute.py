"""Where a run's tasks execute: in-process for small runs, a warm LocalCluster otherwise."""

from __future__ import annotations

import os
import sys

import pytest

from flows.compute import ComputeChoice, InlineCompute, LocalClusterCompute, connect
from pipeline.errors import ServiceUnavailable

WARMED = ("qiskit", "qiskit_aer", "ortools", "numba", "pipeline.engine.chunk", "pipeline.classical")


def _loaded_modules() -> list[str]:
    return [name for name in WARMED if name in sys.modules]


def test_small_work_runs_inline_and_large_work_gets_a_cluster() -> None:
    choice = ComputeChoice(None, 2, inline_below_s=2.0, start_timeout_s=60)
    small = choice.open(0.5)
    try:
        assert isinstance(small, InlineCompute) and small.workers == 1
        future = small.submit(os.getpid, key="pid")
        assert future.result(timeout=30) == os.getpid()  # in this very process
    finally:
        small.close()
    large = choice.open(5.0)
    try:
        assert isinstance(large, LocalClusterCompute) and large.workers == 2
    finally:
        large.close()


@pytest.mark.e2e
def test_the_local_cluster_starts_warm_workers_and_shuts_them_down() -> None:
    compute = LocalClusterCompute(1, start_timeout_s=120)
    try:
        client = compute.client()
        loaded = client.run(_loaded_modules, wait=True)
        assert len(loaded) == 1
        # The preload imported the heavy libraries before the worker took any work.
        assert set(next(iter(loaded.values()))) == set(WARMED)
        future = compute.submit(os.getpid, key="pid")
        assert future.result(timeout=60) != os.getpid()  # in a worker process
    finally:
        compute.close()
    assert client.status == "closed"


def test_an_unreachable_scheduler_is_a_service_unavailable_error() -> None:
    with pytest.raises(ServiceUnavailable, match=r"127\.0\.0\.1:1"):
        connect("tcp://127.0.0.1:1", timeout_s=2)
