"""IBM Quantum through qiskit-ibm-runtime, in Batch execution mode: ``ibm:ibm_torino``.

Credentials come from the environment (``QISKIT_IBM_TOKEN``, ``QISKIT_IBM_INSTANCE``,
``QISKIT_IBM_CHANNEL``, default ``ibm_quantum_platform``) or from the Prefect Secret
block named by ``QHOPPER_IBM_SECRET_BLOCK``. They are held in memory only: never logged,
never written, masked in every repr.

A device name starting with ``fake_`` (``ibm:fake_manila``) runs the runtime's own local
testing mode: the same Batch, SamplerV2 and EstimatorV2 code path, executed on the fake
provider's snapshot of that device, with no network and no credentials. Real devices are
billed for the QPU time the runtime reports (``job.usage()``).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from qiskit.primitives import BaseEstimatorV2, BaseSamplerV2
from qiskit.transpiler import StagedPassManager, Target, generate_preset_pass_manager

from pipeline.backends.aer_noisy import fake_device
from pipeline.backends.base import (
    BackendJob,
    Estimate,
    Kind,
    QuantumBackend,
    Workload,
    mapped_errors,
    register,
)
from pipeline.config import PriceSettings
from pipeline.errors import ConfigError

log = logging.getLogger("qhopper.backends.ibm")
OPTIMIZATION_LEVEL = 1
ESTIMATOR_PRECISION = 1 / 32  # ~1,024 shots per expectation value
DEFAULT_CHANNEL = "ibm_quantum_platform"


@dataclass(frozen=True)
class Credentials:
    token: str = field(repr=False)
    channel: str
    instance: str | None
    source: str

    def __repr__(self) -> str:
        return f"Credentials(token=***, channel={self.channel!r}, instance={self.instance!r}, source={self.source!r})"

    __str__ = __repr__

    @classmethod
    def load(cls) -> Credentials:
        channel = os.environ.get("QISKIT_IBM_CHANNEL") or DEFAULT_CHANNEL
        instance = os.environ.get("QISKIT_IBM_INSTANCE") or None
        token = os.environ.get("QISKIT_IBM_TOKEN")
        if token:
            return cls(token, channel, instance, "environment QISKIT_IBM_TOKEN")
        block = os.environ.get("QHOPPER_IBM_SECRET_BLOCK")
        if block:
            from prefect.blocks.system import Secret

            value = Secret.load(block).get()  # type: ignore[union-attr]
            return cls(str(value), channel, instance, f"Prefect Secret block {block!r}")
        raise ConfigError(
            "IBM Quantum needs credentials: set QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE), "
            "or name a Prefect Secret block in QHOPPER_IBM_SECRET_BLOCK"
        )


class IBMRuntimeBackend(QuantumBackend):
    def __init__(self, device_name: str, max_qubits: int) -> None:
        self.device_name = device_name
        self.local = device_name.startswith("fake_")
        self.name = f"ibm:{device_name}"
        self.solver_path = "simulator" if self.local else "qpu"
        self.max_qubits = min(max_qubits, self.device.num_qubits)

    @cached_property
    def device(self) -> Any:
        if self.local:
            return fake_device(self.device_name)
        from qiskit_ibm_runtime import QiskitRuntimeService

        credentials = Credentials.load()
        log.info(
            "connecting to IBM Quantum (%s, instance %s)", credentials.channel, credentials.instance
        )
        with mapped_errors():
            service = QiskitRuntimeService(
                channel=credentials.channel,
                token=credentials.token,
                instance=credentials.instance,
            )
            return service.backend(self.device_name)

    @cached_property
    def batch(self) -> Any:
        """The runtime's Batch execution mode: the jobs of a run share it."""
        from qiskit_ibm_runtime import Batch

        with mapped_errors():
            return Batch(backend=self.device)

    @property
    def target_label(self) -> str:
        version = getattr(self.device, "backend_version", "0")
        return f"ibm-{self.device_name}-{version}-O{OPTIMIZATION_LEVEL}"

    @property
    def target(self) -> Target:
        target: Target = self.device.target
        return target

    def pass_manager(self) -> StagedPassManager:
        return self._pass_manager

    @cached_property
    def _pass_manager(self) -> StagedPassManager:
        return generate_preset_pass_manager(
            optimization_level=OPTIMIZATION_LEVEL, backend=self.device
        )

    def primitive(self, kind: Kind, shots: int, seed: int) -> BaseEstimatorV2 | BaseSamplerV2:
        from qiskit_ibm_runtime import EstimatorV2, SamplerV2

        options: dict[str, Any] = {"simulator": {"seed_simulator": seed}} if self.local else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "estimator":
                return EstimatorV2(
                    mode=self.batch, options={**options, "default_precision": ESTIMATOR_PRECISION}
                )
            return SamplerV2(mode=self.batch, options={**options, "default_shots": shots})

    def estimate(self, work: Workload, prices: PriceSettings, memory_limit: int) -> Estimate:
        reason = self.incompatibility(work.n_qubits)
        if self.local:  # a noisy simulation on this machine, priced as CPU
            per_call = 0.05 + 0.04 * self.device.num_qubits
            execute_s = (work.calls + work.evaluations / 16) * per_call
            cost = execute_s * prices.cpu_usd_per_core_second
            return Estimate(cost, 0.0, execute_s, 16 * 4**work.n_qubits, reason)
        shots = work.evaluations * round(ESTIMATOR_PRECISION**-2) + work.shots
        execute_s = work.calls * prices.qpu_seconds_per_job + shots * prices.qpu_seconds_per_shot
        return Estimate(execute_s * prices.qpu_usd_per_second, 0.0, execute_s, 0, reason)

    def bill(self, job: BackendJob, run_s: float, shots: int, prices: PriceSettings) -> float:
        if self.local:
            return super().bill(job, run_s, shots, prices)
        try:
            seconds = float(job.usage())  # type: ignore[attr-defined]
        except Exception:  # usage not reported (failed early): bill what ran
            seconds = run_s
        return seconds * prices.qpu_usd_per_second


@register("ibm")
def _make(argument: str, max_qubits: int) -> QuantumBackend:
    if not argument:
        raise ConfigError(
            "ibm needs a device name: ibm:ibm_torino (or ibm:fake_manila to test locally)"
        )
    return IBMRuntimeBackend(argument, max_qubits)
