"""Where a run's tasks execute: in-process for small runs, a warm LocalCluster otherwise."""

from __future__ import annotations

import contextlib
import os
import sys

import pytest

from flows.compute import ComputeChoice, InlineCompute, LocalClusterCompute, connect
from pipeline.errors import ServiceUnavailable

WARMED = (
    "qiskit",
    "qiskit_aer",
    "ortools",
    "numba",
    "pipeline.workers.quantum",
    "pipeline.classical",
)


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


def test_our_cluster_never_warns_that_the_dashboard_port_is_in_use() -> None:
    """Another cluster (or anything) on 8787 made every `serve` print Dask's "Port 8787 is
    already in use" warning: our scheduler's HTTP routes take a free loopback port."""
    import socket
    import warnings

    from flows.compute import local_cluster

    with socket.socket() as taken, warnings.catch_warnings(record=True) as caught:
        with contextlib.suppress(OSError):  # already in use: all the better
            taken.bind(("127.0.0.1", 8787))
            taken.listen(1)
        warnings.simplefilter("always")
        with local_cluster(0) as client:
            port = client.scheduler_info()["services"]["dashboard"]
    assert port != 8787
    assert not [w for w in caught if "already in use" in str(w.message)]
