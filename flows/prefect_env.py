"""Prefect settings that keep it quiet, local and predictable; applied before Prefect loads."""

from __future__ import annotations

import os
from pathlib import Path


def configure_prefect(home: Path, log_level: str = "WARNING") -> None:
    """Point Prefect's home under ``QHOPPER_HOME`` and turn off what a batch job does not need.

    Values already in the environment win, so operators can still point at a real server
    (``PREFECT_API_URL``) or raise the log level.
    """
    defaults = {
        "PREFECT_HOME": str((home / "prefect").resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": log_level,
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        "PREFECT_TASKS_REFRESH_CACHE": "false",
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
