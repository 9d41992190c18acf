"""Quantum backends behind one small interface, chosen by a spec string (``aer``, ...)."""

from pipeline.backends.base import QuantumBackend, get_backend, known_backends

__all__ = ["QuantumBackend", "get_backend", "known_backends"]
