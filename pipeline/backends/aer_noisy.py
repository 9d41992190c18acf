"""Aer with a fake IBM device's noise model and coupling map: ``aer-noisy:fake_brisbane``.

Templates are transpiled for the device's real target (basis gates, coupling map), so
compilation meets routing and SWAPs as on hardware; the simulator then applies the
device snapshot's gate, readout and relaxation errors. Expectations are exact over the
noise (density matrix), which costs 16 * 4**n bytes, so the qubit limit is lower than
the ideal simulator's. On a 127-qubit device each call pays ~1.5 s for the noise model;
small devices (``fake_manila``, 5 qubits) take a few milliseconds.
"""

from __future__ import annotations

import warnings
from functools import cache, cached_property
from typing import Any

import qiskit_aer
from qiskit.primitives import BaseEstimatorV2, BaseSamplerV2
from qiskit.transpiler import StagedPassManager, Target, generate_preset_pass_manager
from qiskit_aer.noise import NoiseModel
from qiskit_aer.primitives import EstimatorV2, SamplerV2

from pipeline.backends.base import Estimate, Kind, QuantumBackend, Workload, register
from pipeline.config import PriceSettings
from pipeline.errors import ConfigError

OPTIMIZATION_LEVEL = 1
DENSITY_MATRIX_QUBITS = 12  # 16 * 4**12 bytes = 256 MiB per state


@cache
def fake_device(name: str) -> Any:
    """A fake IBM device of qiskit-ibm-runtime's fake provider, by its name (``fake_brisbane``)."""
    from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some snapshots warn that they are not typical
        devices = {device.name: device for device in FakeProviderForBackendV2().backends()}
    if name not in devices:
        raise ConfigError(f"unknown fake device {name!r}; known: {', '.join(sorted(devices))}")
    return devices[name]


class AerNoisyBackend(QuantumBackend):
    solver_path = "simulator"
    local = True

    def __init__(self, device: str, max_qubits: int) -> None:
        self.device = fake_device(device)
        self.name = f"aer-noisy:{device}"
        self.max_qubits = min(max_qubits, self.device.num_qubits, DENSITY_MATRIX_QUBITS)

    @property
    def target_label(self) -> str:
        version = getattr(self.device, "backend_version", "0")
        return (
            f"aer-noisy-{self.device.name}-{version}-{qiskit_aer.__version__}-O{OPTIMIZATION_LEVEL}"
        )

    @property
    def target(self) -> Target:
        return self.device.target

    def pass_manager(self) -> StagedPassManager:
        return self._pass_manager

    @cached_property
    def _pass_manager(self) -> StagedPassManager:
        return generate_preset_pass_manager(
            optimization_level=OPTIMIZATION_LEVEL, backend=self.device
        )

    @cached_property
    def _options(self) -> dict[str, Any]:
        return {
            "noise_model": NoiseModel.from_backend(self.device),
            "method": "density_matrix",
            "max_parallel_threads": 1,
        }

    def primitive(self, kind: Kind, shots: int, seed: int) -> BaseEstimatorV2 | BaseSamplerV2:
        if kind == "estimator":
            return EstimatorV2(
                options={"backend_options": self._options, "run_options": {"seed_simulator": seed}}
            )
        return SamplerV2(default_shots=shots, seed=seed, options={"backend_options": self._options})

    def estimate(self, work: Workload, prices: PriceSettings, memory_limit: int) -> Estimate:
        memory = 16 * 4**work.n_qubits
        # A density matrix costs the square of a statevector's amplitudes, plus the noise
        # model's fixed cost per call (large devices dominate here).
        per_call = 0.005 + 0.012 * self.device.num_qubits
        execute_s = work.calls * per_call + (work.evaluations + work.problems) * (
            8e-9 * work.gates * 4**work.n_qubits
        )
        cost = (
            execute_s * prices.cpu_usd_per_core_second + work.shots * prices.simulator_usd_per_shot
        )
        reason = None
        if memory > memory_limit:
            reason = f"density matrix of {work.n_qubits} qubits needs {memory} bytes; limit {memory_limit}"
        return Estimate(cost, 0.0, execute_s, memory, reason)


@register("aer-noisy")
def _make(argument: str, max_qubits: int) -> QuantumBackend:
    if not argument:
        raise ConfigError("aer-noisy needs a fake device: aer-noisy:fake_brisbane")
    return AerNoisyBackend(argument, max_qubits)
