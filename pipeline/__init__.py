"""qhopper's core library: problem model and readers, intake store, backends, engines, results."""

from pipeline.config import Settings, load_settings
from pipeline.errors import (
    BackendError,
    ConfigError,
    InputIssue,
    InputRejected,
    PermanentBackendError,
    QhopperError,
    TransientBackendError,
)
from pipeline.formulation import Formulation, formulate, objective
from pipeline.intake import IntakeStore
from pipeline.model import MaxCutSpec, PortfolioSpec, ProblemSpec, QuboSpec, idempotency_key

__version__ = "0.1.0"

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
