"""The ``qhopper`` command line. Exit codes: 0 ok, 2 bad input or usage, 1 failure.

It lives in ``flows``, the top layer, so that reaching the run core and the Prefect flow is
an import downward. Each command imports what it needs when it runs: ``qhopper status``
does not pay for Qiskit.
"""

import os

from flows.cli import (
    analysing,
    angles_cmd,
    canarying,
    inspecting,
    replaying,
    requeueing,
    running,
    serving,
    serving_api,
    submitting,
)
from flows.cli.common import app
from pipeline.private import PRIVATE_UMASK

__all__ = [
    "analysing",
    "angles_cmd",
    "app",
    "canarying",
    "inspecting",
    "main",
    "replaying",
    "requeueing",
    "running",
    "serving",
    "serving_api",
    "submitting",
]


def main() -> None:
    """The console entry point. Under an owner-only umask, so what libraries create for us
    (Prefect's database, SQLite's temporary files) is private too, like what we create."""
    os.umask(PRIVATE_UMASK)
    app()
