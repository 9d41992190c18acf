"""The ``qhopper`` command line. Exit codes: 0 ok, 2 bad input or usage, 1 failure.

It lives in ``flows``, the top layer, so that reaching the run core and the Prefect flow is
an import downward. Each command imports what it needs when it runs: ``qhopper status``
does not pay for Qiskit.
"""

from flows.cli import (
    analysing,
    angles_cmd,
    inspecting,
    replaying,
    requeueing,
    running,
    serving,
    serving_api,
    submitting,
)
from flows.cli.common import app

__all__ = [
    "analysing",
    "angles_cmd",
    "app",
    "inspecting",
    "main",
    "replaying",
    "requeueing",
    "running",
    "serving",
    "serving_api",
    "submitting",
]


def main() -> None:  # pragma: no cover - console entry point
    app()
