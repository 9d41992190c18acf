"""qhopper's core library: problem model and readers, intake store, backends, engines, results.

Names are imported on first use (PEP 562), so ``import pipeline.config`` stays cheap for
commands that never touch a formulation or the intake.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "BackendError": "pipeline.errors",
    "ConfigError": "pipeline.errors",
    "Formulation": "pipeline.formulation",
    "InputIssue": "pipeline.errors",
    "InputRejected": "pipeline.errors",
    "IntakeStore": "pipeline.intake",
    "MaxCutSpec": "pipeline.model",
    "PermanentBackendError": "pipeline.errors",
    "PortfolioSpec": "pipeline.model",
    "ProblemSpec": "pipeline.model",
    "QhopperError": "pipeline.errors",
    "QuboSpec": "pipeline.model",
    "Settings": "pipeline.config",
    "TransientBackendError": "pipeline.errors",
    "formulate": "pipeline.formulation",
    "idempotency_key": "pipeline.model",
    "load_settings": "pipeline.config_sources",
    "objective": "pipeline.formulation",
}
__all__ = [
    "BackendError",
    "ConfigError",
    "Formulation",
    "InputIssue",
    "InputRejected",
    "IntakeStore",
    "MaxCutSpec",
    "PermanentBackendError",
    "PortfolioSpec",
    "ProblemSpec",
    "QhopperError",
    "QuboSpec",
    "Settings",
    "TransientBackendError",
    "formulate",
    "idempotency_key",
    "load_settings",
    "objective",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
