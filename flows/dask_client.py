"""Dask wiring: a LocalCluster by default, any scheduler by address.

Workers are processes with one thread each (Aer and CP-SAT calls do not run in parallel
in Python threads, and nested threading oversubscribes the cores), started with the
BLAS/OpenMP thread counts pinned to one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

_SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
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
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=40,
        host="127.0.0.1",
    )
    client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def worker_count(client: Client) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))
