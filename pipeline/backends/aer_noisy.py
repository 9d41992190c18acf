"""Aer with a fake IBM device's noise model and coupling map: ``aer-noisy:fake_brisbane``.

Templates are transpiled for the device's real target (basis gates, coupling map), so
compilation meets routing and SWAPs as on hardware; the simulator then applies the
device snapshot's gate, readout and relaxation errors. Expectations are exact over the
noise (density matrix), which costs 16 * 4**n bytes, so the qubit limit is lower than
the ideal simulator's. On a 127-qubit device each call pays ~1.5 s for the noise model;
small devices (``fake_manila``, 5 qubits) take a few milliseconds. Shots are sampled one
region of the circuit at a time (:mod:`pipeline.backends.regionwise`), exact for these noise
models, which have no crosstalk: so a circuit packing problems side by side across a
133-qubit chip samples as fast as its regions do, each at most ``STAND_IN_QUBITS``. It stands in for the IBM
device, so its calls are cut into jobs within IBM's limits, as on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import qiskit_aer
from qiskit_aer.noise import NoiseModel
from qiskit_aer.primitives import EstimatorV2

from pipeline.backends.aer import ERRORS
from pipeline.backends.base import (
    Backend,
    Capabilities,
    CostModel,
    Estimate,
    Primitive,
    PrimitiveRunner,
    Workload,
)
from pipeline.backends.devices import STAND_IN_QUBITS, DeviceTarget, fake_device
from pipeline.backends.limits import IBM_RUNTIME, ProviderLimits
from pipeline.backends.regionwise import RegionwiseSampler
from pipeline.config import PriceSettings
from pipeline.errors import ConfigError
from pipeline.vocabulary import SolverPath


class NoisyRunner(PrimitiveRunner):
    local = True

    def __init__(self, device: Any) -> None:
        super().__init__()
        self.device = device

    @cached_property
    def _options(self) -> dict[str, Any]:
        return {
            "noise_model": NoiseModel.from_backend(self.device),
            "method": "density_matrix",
            "max_parallel_threads": 1,
        }

    def primitive(self, kind: Primitive, shots: int, seed: int) -> Any:
        if kind == Primitive.ESTIMATOR:
            return EstimatorV2(
                options={"backend_options": self._options, "run_options": {"seed_simulator": seed}}
            )
        # Shots come one region at a time: a packed circuit spans the whole chip.
        return RegionwiseSampler(self._options["noise_model"], shots, seed)


class DensityMatrixCosts(CostModel):
    def __init__(self, device_qubits: int, limits: ProviderLimits) -> None:
        self.device_qubits = device_qubits
        self.limits = limits

    def estimate(self, work: Workload, prices: PriceSettings, memory_limit: int) -> Estimate:
        memory = 16 * 4**work.n_qubits
        # A density matrix costs the square of a statevector's amplitudes, plus the noise
        # model's fixed cost per job (large devices dominate here).
        per_job = 0.005 + 0.012 * self.device_qubits
        execute_s = work.jobs(self.limits) * per_job + (work.evaluations + work.problems) * (
            8e-9 * work.gates * 4**work.n_qubits
        )
        cost = execute_s * prices.cpu_usd_per_core_second
        reason = None
        if memory > memory_limit:
            reason = f"density matrix of {work.n_qubits} qubits needs {memory} bytes; limit {memory_limit}"
        return Estimate(cost, 0.0, execute_s, memory, reason)


def make(argument: str, max_qubits: int, resolve: Callable[[str], Backend]) -> Backend:
    if not argument:
        raise ConfigError("aer-noisy needs a fake device: aer-noisy:fake_brisbane")
    device = fake_device(argument)
    name = f"aer-noisy:{argument}"
    limit = min(max_qubits, device.num_qubits, STAND_IN_QUBITS)
    return Backend(
        name=name,
        solver_path=SolverPath.SIMULATOR,
        target=DeviceTarget(name, limit, lambda: device, f"aer-noisy-{qiskit_aer.__version__}"),
        runner=NoisyRunner(device),
        costs=DensityMatrixCosts(device.num_qubits, IBM_RUNTIME),
        errors=ERRORS,
        capabilities=Capabilities(exact_statevector=False, local=True),
        limits=IBM_RUNTIME,
    )
