"""The run's own Dask cluster: started in the background, with warmed workers."""

from __future__ import annotations

import sys

import pytest

from flows.dask_client import BackgroundClient

pytestmark = pytest.mark.e2e


def _loaded_modules() -> list[str]:
    wanted = ("qiskit", "qiskit_aer", "ortools", "numba", "pipeline.execution")
    return [name for name in wanted if name in sys.modules]


def test_background_client_starts_warm_workers_and_shuts_them_down() -> None:
    dask = BackgroundClient(None, 1, start_timeout_s=120)
    try:
        client = dask.client()
        loaded = client.run(_loaded_modules, wait=True)
        assert len(loaded) == 1
        # The preload imported the heavy libraries before the worker took any work.
        assert set(next(iter(loaded.values()))) == {
            "qiskit",
            "qiskit_aer",
            "ortools",
            "numba",
            "pipeline.execution",
        }
        assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
    finally:
        dask.close()
    assert client.status == "closed"


def test_a_cluster_that_cannot_start_raises_its_error_and_closes_cleanly() -> None:
    dask = BackgroundClient("nonsense://127.0.0.1:1", 1, start_timeout_s=60)
    with pytest.raises(ValueError, match="nonsense"):
        dask.client()
    dask.close()  # nothing was started: closing must neither raise nor hang
