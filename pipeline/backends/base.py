"""The backend interface and the registry that maps spec strings to implementations.

A backend describes its target (for the transpiler), hands out V2 primitives bound to
it, states its limits, and explains in words why a batch does not fit it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import cache

from qiskit.primitives import BaseEstimatorV2, BaseSamplerV2
from qiskit.transpiler import StagedPassManager

from pipeline.errors import ConfigError


class QuantumBackend(ABC):
    """What the engine needs from a place that runs circuits."""

    name: str
    solver_path: str  # "simulator" or "qpu"
    max_qubits: int

    @property
    @abstractmethod
    def target_label(self) -> str:
        """Identifies the compilation target: part of every template's artifact key."""

    @abstractmethod
    def pass_manager(self) -> StagedPassManager:
        """The transpiler for this target, built once per process."""

    @abstractmethod
    def estimator(self, seed: int) -> BaseEstimatorV2: ...

    @abstractmethod
    def sampler(self, shots: int, seed: int) -> BaseSamplerV2: ...

    def incompatibility(self, n_qubits: int) -> str | None:
        """Why a problem of this size cannot run here, or None if it can."""
        if n_qubits > self.max_qubits:
            return f"needs {n_qubits} qubits; {self.name} takes at most {self.max_qubits}"
        return None


_REGISTRY: dict[str, Callable[[str, int], QuantumBackend]] = {}


def register(
    name: str,
) -> Callable[[Callable[[str, int], QuantumBackend]], Callable[[str, int], QuantumBackend]]:
    def decorator(
        factory: Callable[[str, int], QuantumBackend],
    ) -> Callable[[str, int], QuantumBackend]:
        _REGISTRY[name] = factory
        return factory

    return decorator


def known_backends() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


@cache
def get_backend(spec: str, max_qubits: int) -> QuantumBackend:
    """Backend for ``name[:argument]``; one instance per process, so pass managers are reused."""
    _load_builtin()
    name, _, argument = spec.partition(":")
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown backend {spec!r}; known backends: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name](argument, max_qubits)


def _load_builtin() -> None:
    from pipeline.backends import aer  # noqa: F401  (registers itself)
