"""Quantum backends behind one small interface, chosen by a spec string.

``aer`` (default), ``aer-noisy:<fake device>``, ``ibm:<device>`` and
``faulty:<inner>?<faults>``; see :func:`get_backend`.
"""

from pipeline.backends.base import (
    Estimate,
    JobState,
    QuantumBackend,
    Workload,
    get_backend,
    known_backends,
    translate_error,
)
from pipeline.backends.calls import CallPolicy, Ledger, MeteredBackend

__all__ = [
    "CallPolicy",
    "Estimate",
    "JobState",
    "Ledger",
    "MeteredBackend",
    "QuantumBackend",
    "Workload",
    "get_backend",
    "known_backends",
    "translate_error",
]
