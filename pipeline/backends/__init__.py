"""Quantum backends behind one small interface, chosen by a spec string.

A backend is a target, a job runner and a cost model with capability flags
(:mod:`pipeline.backends.base`); :func:`get_backend` builds one from ``aer`` (default),
``aer-noisy:<fake device>``, ``ibm:<device>`` or ``faulty:<inner>?<faults>``, and
:class:`BackendCaller` is how one chunk calls it. Importing this package imports no qiskit.
"""

from pipeline.backends.base import (
    Backend,
    Capabilities,
    CompileTarget,
    CostModel,
    ErrorRule,
    ErrorTable,
    Estimate,
    JobRunner,
    JobState,
    Workload,
)
from pipeline.backends.calls import BackendCaller, CallPolicy, Ledger
from pipeline.backends.registry import check_backend_spec, get_backend, known_backends

__all__ = [
    "Backend",
    "BackendCaller",
    "CallPolicy",
    "Capabilities",
    "CompileTarget",
    "CostModel",
    "ErrorRule",
    "ErrorTable",
    "Estimate",
    "JobRunner",
    "JobState",
    "Ledger",
    "Workload",
    "check_backend_spec",
    "get_backend",
    "known_backends",
]
