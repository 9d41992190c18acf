"""Where a run's tasks execute: in this process, on our own LocalCluster, or on a scheduler.

A LocalCluster costs seconds to start (worker processes importing Qiskit, Aer, OR-Tools
and loading the numba kernels), more than a small run's whole work. So a run estimates its
work first: below ``dask.inline_below_s`` core-seconds it runs its tasks on one thread of
its own process (:class:`InlineCompute`); above, it starts a LocalCluster of one
single-threaded process per core (:class:`LocalClusterCompute`). Given a scheduler address
(``--dask-address``, or the warm cluster ``serve`` keeps), it always uses that
(:class:`DaskCompute`). Every kind runs the same task functions and hands back futures
with ``add_done_callback`` and ``result(timeout)``. ``priority`` orders a scheduler's queue
(higher first; the canary's tasks go below the run's own); in-process tasks run in order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any, Protocol

from pipeline.errors import ServiceUnavailable

log = logging.getLogger("qhopper.compute")

# BLAS reads these as NumPy loads, before a worker could set them: they go in this process's
# environment for the workers to inherit. Numba reads its own as it is imported, after a
# worker has set its environment; in this process a changed NUMBA_NUM_THREADS makes Numba's
# next compilation fail once its threads run ("Cannot set NUMBA_NUM_THREADS ..."): it is
# given to the workers alone.
BLAS_SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
WORKER_ENV = {"NUMBA_NUM_THREADS": "1"}
SINGLE_THREAD_ENV = {**BLAS_SINGLE_THREAD_ENV, **WORKER_ENV}  # for a worker's own process

# Every comm keeps its last messages (1,000 by default) for debugging: with task arguments
# inside, that held ~600 MiB of formulations in a 100,000-problem run. Our clusters and our
# clients of an external scheduler keep 16.
SHORT_MESSAGE_LOG = {"distributed.admin.low-level-log-length": 16}
# Dask's defaults poll for a dashboard this cluster does not have: an event-loop health tick
# every 20 ms in every server, a 10 ms statistical profiler in every worker, a memory check
# every 100 ms. Idle, our 2-worker cluster burned 0.13 of a core with them and 0.013 without.
QUIET_CLUSTER_CONFIG = {
    **SHORT_MESSAGE_LOG,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.worker.profile.enabled": False,
}


class TaskFuture(Protocol):
    """What both concurrent.futures and distributed futures offer a run."""

    def result(self, timeout: float | None = None) -> Any: ...

    def add_done_callback(self, fn: Callable[[Any], object]) -> None: ...

    def cancel(self) -> Any: ...


class Compute(Protocol):
    """Runs a run's tasks; ``workers`` is how many run side by side."""

    label: str

    @property
    def workers(self) -> int: ...

    def submit(
        self, fn: Callable[..., Any], *args: Any, key: str, priority: int = 0
    ) -> TaskFuture: ...

    def close(self) -> None: ...


class InlineCompute:
    """Tasks on one thread of this process: no cluster to start for a small run."""

    label = "inline"

    def __init__(self) -> None:
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="qhopper-inline")

    @property
    def workers(self) -> int:
        return 1

    def submit(
        self, fn: Callable[..., Any], *args: Any, key: str, priority: int = 0
    ) -> Future[Any]:
        return self.thread.submit(fn, *args)

    def close(self) -> None:
        self.thread.shutdown(wait=True, cancel_futures=True)


class DaskCompute:
    """Tasks on a Dask cluster through one client, as plain ``distributed`` tasks."""

    def __init__(self, client: Any, label: str) -> None:
        self.client = client
        self.label = label

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def submit(self, fn: Callable[..., Any], *args: Any, key: str, priority: int = 0) -> TaskFuture:
        future: TaskFuture = self.client.submit(fn, *args, key=key, pure=False, priority=priority)
        return future

    def close(self) -> None:
        self.client.close()


def connect(address: str, timeout_s: float = 30.0) -> DaskCompute:
    """A client on a running scheduler; an unreachable one is a ServiceUnavailable."""
    import dask
    from distributed import Client

    try:
        with dask.config.set(SHORT_MESSAGE_LOG):
            client = Client(address, set_as_default=False, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ServiceUnavailable(
            f"cannot reach the Dask scheduler at {address}: {type(exc).__name__}: {exc}"
        ) from exc
    return DaskCompute(client, address)


class LocalClusterCompute:
    """Our own LocalCluster, started on a background thread so its start overlaps the run.

    ``workers`` is known before the cluster is up (we start that many); the first
    ``submit`` waits for the start, within ``start_timeout_s``.
    """

    label = "local-cluster"

    def __init__(self, n_workers: int, start_timeout_s: float) -> None:
        self._n_workers = n_workers
        self._timeout = start_timeout_s
        self._stack = ExitStack()
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="qhopper-cluster-start")
        self._client: Future[Any] = self._starter.submit(
            self._stack.enter_context, local_cluster(n_workers)
        )
        self.waited_s = 0.0

    @property
    def workers(self) -> int:
        return self._n_workers

    def client(self) -> Any:
        """The started client; waits for the start (re-raising its error) within the timeout."""
        import time

        started = time.perf_counter()
        try:
            return self._client.result(timeout=self._timeout)
        finally:
            self.waited_s += time.perf_counter() - started

    def submit(self, fn: Callable[..., Any], *args: Any, key: str, priority: int = 0) -> TaskFuture:
        client = self.client()
        future: TaskFuture = client.submit(fn, *args, key=key, pure=False, priority=priority)
        return future

    def close(self) -> None:
        """Shut the cluster down, waiting for a start still in progress to finish first."""
        try:
            self._client.exception(timeout=self._timeout)
        finally:
            self._starter.shutdown(wait=False)
            self._stack.close()


@contextmanager
def local_cluster(n_workers: int) -> Iterator[Any]:
    """A client on a quiet LocalCluster of single-threaded, pre-warmed worker processes."""
    import dask
    from distributed import Client, LocalCluster

    # Our own cluster: its shutdown chatter (slow nanny closes) is not actionable by users.
    logging.getLogger("distributed").setLevel(logging.ERROR)
    for name, value in BLAS_SINGLE_THREAD_ENV.items():
        os.environ.setdefault(name, value)
    with dask.config.set(QUIET_CLUSTER_CONFIG):  # read as the servers start; workers inherit it
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # No dashboard (bokeh is not installed), but the scheduler still serves its health
            # and metrics routes, by default on 8787, warning "Port 8787 is already in use"
            # whenever another cluster has it: a free loopback port never collides.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            # Workers log a failed heartbeat as an ERROR with its traceback when the scheduler
            # closes first at shutdown (a race in every stop): nothing a user can act on; a
            # task's own error reaches the run through its future, a lost worker as a
            # KilledWorker there.
            silence_logs=logging.CRITICAL,
            host="127.0.0.1",
            preload=["flows.worker_setup"],
            env=WORKER_ENV,
        )
        client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


PRESTART_PROBLEMS = 2000  # a queue this deep never runs in-process


class ComputeChoice:
    """How a run gets its compute: a scheduler address if configured, else inline for
    small runs and our own LocalCluster for the rest. Each ``open`` gives the run a Compute
    it owns and closes."""

    def __init__(
        self,
        address: str | None,
        n_workers: int,
        inline_below_s: float,
        start_timeout_s: float,
    ) -> None:
        self.address = address
        self.n_workers = n_workers
        self.inline_below_s = inline_below_s
        self.start_timeout_s = start_timeout_s
        self._early: LocalClusterCompute | None = None

    def prestart(self, pending: int) -> None:
        """Start our LocalCluster now if the queue is deep enough to need it: its workers
        then import their libraries while this process imports its own and plans."""
        if not self.address and self._early is None and pending >= PRESTART_PROBLEMS:
            self._early = LocalClusterCompute(self.n_workers, self.start_timeout_s)

    def discard(self) -> None:
        """Shut down a cluster started early that no run took (nothing was claimed)."""
        if self._early is not None:
            early, self._early = self._early, None
            early.close()

    def open(self, work_s: float) -> Compute:
        """Compute for a run whose work is estimated at ``work_s`` core-seconds."""
        if self._early is not None:
            early, self._early = self._early, None
            return early
        if self.address:
            return connect(self.address)
        if work_s < self.inline_below_s:
            return InlineCompute()
        return LocalClusterCompute(self.n_workers, self.start_timeout_s)
