"""IBM Quantum through qiskit-ibm-runtime, in Batch execution mode: ``ibm:ibm_torino``.

Credentials come from the environment (``QISKIT_IBM_TOKEN``, ``QISKIT_IBM_INSTANCE``,
``QISKIT_IBM_CHANNEL``, default ``ibm_quantum_platform``) or from the Prefect Secret
block named by ``QHOPPER_IBM_SECRET_BLOCK``. They are held in memory only: never logged,
never written, masked in every repr.

A device name starting with ``fake_`` (``ibm:fake_manila``) runs the runtime's own local
testing mode: the same Batch and EstimatorV2 code path, executed on the fake provider's
snapshot of that device, with no network and no credentials. Its shots come from the
device's noise model one region of the circuit at a time (pipeline.backends.regionwise): a
circuit packing problems across a 133-qubit chip is out of reach of a whole simulation, and
Aer's device noise models have no crosstalk, so sampling regions apart is exact. Real devices are
billed for the QPU time the runtime reports (``job.usage()``). Either way the device's own
qubit count bounds a problem, and calls are cut into jobs within IBM's limits.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import requests
from qiskit.providers import JobTimeoutError, QiskitBackendNotFoundError
from qiskit_ibm_runtime.api.exceptions import (
    AuthenticationLicenseError,
    RequestsApiError,
    UserTimeoutExceededError,
)
from qiskit_ibm_runtime.exceptions import (
    IBMAccountError,
    IBMNotAuthorizedError,
    RuntimeJobMaxTimeoutError,
)

from pipeline.backends.base import (
    Backend,
    BackendJob,
    Capabilities,
    CostModel,
    ErrorRule,
    ErrorTable,
    Estimate,
    Primitive,
    PrimitiveRunner,
    Workload,
)
from pipeline.backends.devices import STAND_IN_QUBITS, DeviceTarget, fake_device
from pipeline.backends.limits import IBM_RUNTIME, ProviderLimits
from pipeline.backends.regionwise import RegionwiseSampler
from pipeline.config import PriceSettings
from pipeline.errors import (
    BackendTimeout,
    ConfigError,
    PermanentBackendError,
    TransientBackendError,
)
from pipeline.vocabulary import SolverPath

log = logging.getLogger("qhopper.backends.ibm")
ESTIMATOR_PRECISION = 1 / 32  # ~1,024 shots per expectation value
DEFAULT_CHANNEL = "ibm_quantum_platform"

ERRORS = ErrorTable(
    (
        ErrorRule.http(RequestsApiError),  # status -1: no answer at all (network)
        # The job's own time limit: a retry would hit it again.
        ErrorRule((RuntimeJobMaxTimeoutError,), PermanentBackendError),
        ErrorRule((JobTimeoutError, UserTimeoutExceededError, requests.Timeout), BackendTimeout),
        ErrorRule(
            (requests.ConnectionError, requests.exceptions.ChunkedEncodingError),
            TransientBackendError,
        ),
        ErrorRule(
            (IBMNotAuthorizedError, IBMAccountError, AuthenticationLicenseError),
            PermanentBackendError,
        ),
        ErrorRule((QiskitBackendNotFoundError,), PermanentBackendError),
    )
)


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


def connect(device_name: str) -> Any:
    """The device: a fake one's snapshot, or a real one through the runtime service."""
    if device_name.startswith("fake_"):
        return fake_device(device_name)
    from qiskit_ibm_runtime import QiskitRuntimeService

    credentials = Credentials.load()
    log.info(
        "connecting to IBM Quantum (%s, instance %s)", credentials.channel, credentials.instance
    )
    service = QiskitRuntimeService(
        channel=credentials.channel, token=credentials.token, instance=credentials.instance
    )
    return service.backend(device_name)


class RuntimeRunner(PrimitiveRunner):
    """The runtime's V2 primitives in one Batch: the jobs of a run share it."""

    def __init__(self, target: DeviceTarget, local: bool) -> None:
        super().__init__()
        self.target = target
        self.local = local

    @cached_property
    def batch(self) -> Any:
        from qiskit_ibm_runtime import Batch

        return Batch(backend=self.target.device)

    def primitive(self, kind: Primitive, shots: int, seed: int) -> Any:
        from qiskit_ibm_runtime import EstimatorV2, SamplerV2

        options: dict[str, Any] = {"simulator": {"seed_simulator": seed}} if self.local else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == Primitive.ESTIMATOR:
                return EstimatorV2(
                    mode=self.batch, options={**options, "default_precision": ESTIMATOR_PRECISION}
                )
            if self.local:  # a packed circuit spans the chip: sampled one region at a time
                return RegionwiseSampler(self.noise_model, shots, seed)
            return SamplerV2(mode=self.batch, options={**options, "default_shots": shots})

    @cached_property
    def noise_model(self) -> Any:
        from qiskit_aer.noise import NoiseModel

        return NoiseModel.from_backend(self.target.device)


class RuntimeCosts(CostModel):
    """QPU seconds at the configured price, per job the limits cut the calls into and per
    shot; local testing mode priced as CPU."""

    def __init__(self, target: DeviceTarget, local: bool, limits: ProviderLimits) -> None:
        self.target = target
        self.local = local
        self.limits = limits

    def estimate(self, work: Workload, prices: PriceSettings, memory_limit: int) -> Estimate:
        reason = self.target.why_not(work.n_qubits)
        jobs = work.jobs(self.limits)
        if self.local:  # a noisy simulation on this machine, priced as CPU
            per_job = 0.05 + 0.04 * self.target.device.num_qubits
            execute_s = (jobs + work.evaluations / 16) * per_job
            cost = execute_s * prices.cpu_usd_per_core_second
            return Estimate(cost, 0.0, execute_s, 16 * 4**work.n_qubits, reason)
        shots = work.evaluations * round(ESTIMATOR_PRECISION**-2) + work.shots
        execute_s = jobs * prices.qpu_seconds_per_job + shots * prices.qpu_seconds_per_shot
        return Estimate(execute_s * prices.qpu_usd_per_second, 0.0, execute_s, 0, reason)

    def bill(self, job: BackendJob, run_s: float, shots: int, prices: PriceSettings) -> float:
        if self.local:
            return super().bill(job, run_s, shots, prices)
        try:
            seconds = float(job.usage())  # type: ignore[attr-defined]
        except Exception:  # usage not reported (failed early): bill what ran
            seconds = run_s
        return seconds * prices.qpu_usd_per_second


def make(argument: str, max_qubits: int, resolve: Callable[[str], Backend]) -> Backend:
    if not argument:
        raise ConfigError(
            "ibm needs a device name: ibm:ibm_torino (or ibm:fake_manila to test locally)"
        )
    local = argument.startswith("fake_")
    name = f"ibm:{argument}"
    target = DeviceTarget(name, max_qubits, lambda: connect(argument), "ibm")
    # A device's own qubits, not quantum.max_qubits (the simulators' cap); connects to a
    # real device. A fake one is simulated here, one region at a time.
    qubits = target.device.num_qubits
    target.max_qubits = min(qubits, STAND_IN_QUBITS) if local else qubits
    return Backend(
        name=name,
        solver_path=SolverPath.SIMULATOR if local else SolverPath.QPU,
        target=target,
        runner=RuntimeRunner(target, local),
        costs=RuntimeCosts(target, local, IBM_RUNTIME),
        errors=ERRORS,
        capabilities=Capabilities(exact_statevector=False, local=local),
        limits=IBM_RUNTIME,
    )
