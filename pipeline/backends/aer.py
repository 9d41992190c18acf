"""Qiskit Aer, the default backend: exact statevector expectations and sampled shots.

Aer runs one thread per call here: inside Dask workers each process owns one core, and
Aer's own threading collapses under contention (see MEASUREMENTS.md).
"""

from __future__ import annotations

from functools import cached_property

import qiskit_aer
from qiskit.primitives import BaseEstimatorV2, BaseSamplerV2
from qiskit.transpiler import StagedPassManager, Target, generate_preset_pass_manager
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import EstimatorV2, SamplerV2

from pipeline.backends.base import Kind, QuantumBackend, register

OPTIMIZATION_LEVEL = 1
_BACKEND_OPTIONS = {"method": "statevector", "max_parallel_threads": 1}


class AerBackend(QuantumBackend):
    name = "aer"
    solver_path = "simulator"
    local = True

    def __init__(self, max_qubits: int) -> None:
        self.max_qubits = max_qubits

    @property
    def target_label(self) -> str:
        return f"aer-statevector-{qiskit_aer.__version__}-O{OPTIMIZATION_LEVEL}"

    @cached_property
    def _simulator(self) -> AerSimulator:
        return AerSimulator(**_BACKEND_OPTIONS)

    @property
    def target(self) -> Target:
        return self._simulator.target

    def pass_manager(self) -> StagedPassManager:
        return self._pass_manager

    @cached_property
    def _pass_manager(self) -> StagedPassManager:
        # Building one costs ~70 ms; transpiling a template with it a few ms.
        return generate_preset_pass_manager(
            optimization_level=OPTIMIZATION_LEVEL, backend=self._simulator
        )

    def primitive(self, kind: Kind, shots: int, seed: int) -> BaseEstimatorV2 | BaseSamplerV2:
        if kind == "estimator":
            return EstimatorV2(
                options={
                    "backend_options": dict(_BACKEND_OPTIONS),
                    "run_options": {"seed_simulator": seed},
                }
            )
        return SamplerV2(
            default_shots=shots, seed=seed, options={"backend_options": dict(_BACKEND_OPTIONS)}
        )


@register("aer")
def _make(argument: str, max_qubits: int) -> QuantumBackend:
    return AerBackend(max_qubits)
