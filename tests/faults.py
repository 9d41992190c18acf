"""Fault injection shared by the tests that kill parts of a real Dask cluster."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cloudpickle
from distributed import Client
from distributed.diagnostics.plugin import WorkerPlugin


class KillWorkerOnce(WorkerPlugin):
    """SIGKILLs the worker that starts the first task whose key has ``prefix`` (once)."""

    name = "qhopper-test-kill-worker-once"

    def __init__(self, marker: str, prefix: str) -> None:
        self.marker = marker
        self.prefix = prefix

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing" or not str(key).startswith(self.prefix):
            return
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def kill_a_worker_once(client: Client, marker: str, prefix: str) -> Iterator[None]:
    """While the block runs, the first worker to start a ``prefix`` task dies by SIGKILL."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    client.register_plugin(KillWorkerOnce(marker, prefix))
    try:
        yield
    finally:
        client.unregister_worker_plugin(KillWorkerOnce.name)
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
