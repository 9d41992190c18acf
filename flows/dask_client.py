"""Dask wiring: a LocalCluster by default, any scheduler by address.

Workers are processes with one thread each (Aer and CP-SAT calls do not run in parallel
in Python threads, and nested threading oversubscribes the cores), started with the
BLAS/OpenMP thread counts pinned to one, and warmed by :mod:`flows.worker_setup`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import dask
from distributed import Client, LocalCluster

_SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}

# Dask's defaults poll for a dashboard this cluster does not have: an event-loop health tick
# every 20 ms in every server, a 10 ms statistical profiler in every worker, a memory check
# every 100 ms. Idle, our 2-worker cluster burned 0.13 of a core with them (6 % of this
# 2-core machine, taken from the workers mid-run) and 0.013 without. Blocked loops are still
# reported (tick limit 3 s), memory still watched, once a second.
QUIET_CLUSTER_CONFIG = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.worker.profile.enabled": False,
}


@contextmanager
def dask_client(address: str | None, n_workers: int) -> Iterator[Client]:
    """A client on ``address``, or on a LocalCluster that lives as long as the block."""
    if address:
        client = Client(address, set_as_default=False, timeout="30s")
        try:
            yield client
        finally:
            client.close()
        return
    # Our own cluster: its shutdown chatter (slow nanny closes) is not actionable by users.
    logging.getLogger("distributed").setLevel(logging.ERROR)
    for name, value in _SINGLE_THREAD_ENV.items():
        os.environ.setdefault(name, value)
    with dask.config.set(QUIET_CLUSTER_CONFIG):  # read as the servers start; workers inherit it
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
            host="127.0.0.1",
            preload=["flows.worker_setup"],
        )
        client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def worker_count(client: Client) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


class BackgroundClient:
    """A Dask client started in a thread, so the cluster's start overlaps the run's work.

    Starting a LocalCluster (processes, imports, kernel loads) takes seconds that the
    run would otherwise spend waiting before its first batch; the flow starts one as soon
    as it knows there is work, and asks for the client only when it needs it.
    """

    def __init__(self, address: str | None, n_workers: int, start_timeout_s: float) -> None:
        self._stack = ExitStack()
        self._timeout = start_timeout_s
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="qhopper-dask-start")
        self._client: Future[Client] = self._pool.submit(
            self._stack.enter_context, dask_client(address, n_workers)
        )

    def client(self) -> Client:
        """The started client; waits for the start, re-raising its error, within the timeout."""
        return self._client.result(timeout=self._timeout)

    def close(self) -> None:
        """Shut the cluster down, waiting for a start still in progress to finish first."""
        try:
            self._client.exception(timeout=self._timeout)
        finally:
            self._pool.shutdown(wait=False)
            self._stack.close()
