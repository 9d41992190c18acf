"""Amazon Braket, a second vendor behind the same interface: ``braket-local``,
``braket-local:dm`` and ``braket:<device ARN>``.

* ``braket-local`` is Braket's local state-vector simulator (``LocalSimulator("braket_sv")``),
  offline. Ideal, so the engine's exact simulator stands in for its expectations (as for
  Aer) and only the answers' shots reach it.
* ``braket-local:dm`` is its density-matrix simulator with a depolarising noise model
  (``NOISE``): expectations are estimated from shots, as on a device.
* ``braket:<ARN>`` is a Braket device or managed simulator through ``AwsDevice``. Credentials
  come from boto3's usual chain (environment, profile, role) and stay inside boto3's session:
  qhopper never reads, logs or writes them. The region comes from the ARN (a global
  simulator's from the chain's default, else us-east-1).

Every call is one program set (:mod:`pipeline.backends.braket_programs`), cut to the device's
own program-set limits (its ``properties.action``: executables and total shots per task) by
:mod:`pipeline.backends.jobs`. Templates are compiled for a Braket gate set and stored like
every template; each worker translates a template into a Braket circuit once.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import botocore.exceptions
import braket._sdk
from qiskit.transpiler import StagedPassManager, Target

from pipeline.backends.aer import translation_pass_manager
from pipeline.backends.base import (
    Backend,
    BackendJob,
    Capabilities,
    CompileTarget,
    ErrorRule,
    ErrorTable,
    Estimate,
    JobRunner,
    Primitive,
    StatevectorCosts,
    Workload,
)
from pipeline.backends.braket_programs import Entry, Translated, entries, program_set, qiskit_result
from pipeline.backends.braket_programs import translate as translate_circuit
from pipeline.backends.limits import ProviderLimits
from pipeline.config import PriceSettings
from pipeline.errors import BackendUnavailable, ConfigError, PermanentBackendError
from pipeline.vocabulary import SolverPath

log = logging.getLogger("qhopper.backends.braket")

# Shots an estimator call takes a parameter set when its PUB names no precision.
ESTIMATOR_SHOTS = 1024
# braket-local:dm's noise: depolarising after every one- and two-qubit gate and a bit flip
# before every measurement, round figures of today's superconducting devices (not any one's).
NOISE = {"one_qubit": 0.001, "two_qubit": 0.01, "readout": 0.02}
# The local simulators' density matrix is 16 * 4**n bytes: 256 MiB at 12 qubits.
DENSITY_MATRIX_QUBITS = 12

# Braket's API errors by their code (docs.aws.amazon.com/braket/latest/APIReference/
# CommonErrors.html and API_CreateQuantumTask.html#API_CreateQuantumTask_Errors), as the
# HTTP status error_for_status judges: throttling and service trouble transient, refusals
# permanent; a code not listed keeps the status AWS answered with.
_STATUS_OF_CODE = {
    "ThrottlingException": 429,
    "ServiceQuotaExceededException": 429,
    "InternalServiceException": 500,
    "ServiceUnavailableException": 503,
    "DeviceOfflineException": 503,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "ExpiredTokenException": 403,
    "ResourceNotFoundException": 404,
    "DeviceRetiredException": 410,
}


def _aws_status(exc: BaseException) -> int:
    response = getattr(exc, "response", {}) or {}
    code = response.get("Error", {}).get("Code", "")
    if code in _STATUS_OF_CODE:
        return _STATUS_OF_CODE[code]
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500))


ERRORS = ErrorTable(
    (
        ErrorRule((botocore.exceptions.ClientError,), status=_aws_status),
        ErrorRule(
            (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ReadTimeoutError),
            BackendUnavailable,
        ),
        ErrorRule((botocore.exceptions.NoCredentialsError,), PermanentBackendError),
    )
)


class BraketTarget(CompileTarget):
    """Braket's gates, every qubit connected: the local simulators take them all, and
    Braket compiles them for a QPU's native gates (a program that is not verbatim)."""

    def __init__(self, name: str, max_qubits: int, basis: Sequence[str]) -> None:
        super().__init__(name, max_qubits)
        self.basis = tuple(basis)

    @property
    def label(self) -> str:
        return f"braket-{braket._sdk.__version__}-{'-'.join(self.basis)}"

    @cached_property
    def transpiler_target(self) -> Target:
        return Target.from_configuration(
            basis_gates=[*self.basis, "measure"], num_qubits=self.max_qubits
        )

    def _build_pass_manager(self) -> StagedPassManager:
        return translation_pass_manager(self.transpiler_target)


# -- jobs -----------------------------------------------------------------------------------
_TASK_STATES = {
    "CREATED": "QUEUED",
    "QUEUED": "QUEUED",
    "RUNNING": "RUNNING",
    "COMPLETED": "DONE",
    "FAILED": "ERROR",
    "CANCELLING": "CANCELLED",
    "CANCELLED": "CANCELLED",
}


class BraketJob:
    """A Braket quantum task as the engine's job: its result in Qiskit's containers."""

    def __init__(self, task: Any, kind: Primitive, found: Sequence[Entry]) -> None:
        self.task = task
        self.kind = kind
        self.found = found
        self.shots = sum(len(entry.rows) * entry.shots for entry in found)

    def job_id(self) -> str:
        return str(self.task.id)

    def status(self) -> str:
        return _TASK_STATES.get(str(self.task.state()).upper(), "RUNNING")

    def result(self) -> Any:
        result = self.task.result()
        if result is None:  # AwsQuantumTask.result() is None for a failed or cancelled task
            reason = self.task.metadata().get("failureReason", "no reason given")
            raise PermanentBackendError(f"Braket task {self.job_id()} failed: {reason}")
        return qiskit_result(self.kind, self.found, result)

    def cancel(self) -> None:
        self.task.cancel()


class BraketRunner(JobRunner):
    """Submits each call as one program set to a Braket device (loaded on first use)."""

    def __init__(self, load: Callable[[], Any], local: bool, noise: Any = None) -> None:
        self._load = load
        self.local = local
        self.noise = noise
        self._translated: dict[int, tuple[Any, Translated]] = {}
        self._lock = threading.Lock()

    @cached_property
    def device(self) -> Any:
        return self._load()

    def translate(self, circuit: Any) -> Translated:
        """A circuit's translation, made once per circuit object (a template's circuits live
        as long as the worker's template cache holds them; this holds them too)."""
        with self._lock:
            cached = self._translated.get(id(circuit))
            if cached is None:
                if len(self._translated) > 64:
                    self._translated.clear()
                translated = translate_circuit(circuit)
                if self.noise is not None:
                    noisy = self.noise.apply(translated.circuit)
                    translated = Translated(
                        noisy, translated.inputs, translated.clbit_qubits, translated.registers
                    )
                cached = self._translated[id(circuit)] = (circuit, translated)
            return cached[1]

    def submit(self, kind: Primitive, pubs: Sequence[Any], shots: int, seed: int) -> BackendJob:
        """Braket's simulators and devices take no seed: shots differ from run to run."""
        found = entries(kind, pubs, shots, ESTIMATOR_SHOTS, self.translate)
        programs = program_set(found)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the dm simulator warns of noise-free circuits
            task = self.device.run(programs, shots=programs.total_shots)
        return BraketJob(task, kind, found)


# -- costs ----------------------------------------------------------------------------------
class LocalSimulatorCosts(StatevectorCosts):
    """Braket's local simulators on one core, priced as CPU time like Aer; the density matrix
    holds 16 * 4**n bytes."""

    def __init__(self, density_matrix: bool) -> None:
        self.density_matrix = density_matrix

    def estimate(self, work: Workload, prices: PriceSettings, memory_limit: int) -> Estimate:
        ideal = super().estimate(work, prices, memory_limit)
        # Measured here (Braket 1.127, 50 parameter sets of 1,024 shots): ~45 ms a parameter
        # set at 5-8 qubits, nearly all of it parsing the executable's OpenQASM (twice: once to
        # validate the program set); the density matrix adds ~50 ms at 5 qubits, x1.66 a qubit.
        sets = work.evaluations + work.problems if self.density_matrix else work.problems
        execute_s = ideal.execute_s + work.calls * 0.01 + sets * 0.045
        memory = ideal.memory_bytes
        if self.density_matrix:
            execute_s += sets * 0.05 * 1.66 ** (work.n_qubits - 5)
            memory = 16 * 4**work.n_qubits
        reason = ideal.reason
        if memory > memory_limit:
            reason = f"density matrix of {work.n_qubits} qubits needs {memory} bytes; limit {memory_limit}"
        cost = execute_s * prices.cpu_usd_per_core_second
        return Estimate(cost, 0.0, execute_s, memory, reason)


# -- limits -----------------------------------------------------------------------------------
def program_set_limits(device: Any, jobs_in_flight: int) -> ProviderLimits:
    """A device's own program-set limits, read from its properties (the local simulators
    declare 100 executables and 200,000 shots a task); an estimator call's executables take
    ``ESTIMATOR_SHOTS`` shots each."""
    from braket.device_schema import DeviceActionType

    action = device.properties.action.get(DeviceActionType.OPENQASM_PROGRAM_SET)
    if action is None:
        raise ConfigError(f"Braket device {device.name} runs no program sets")
    return ProviderLimits(
        executables_per_job=int(action.maximumExecutables),
        executions_per_job=int(action.maximumTotalShots),
        jobs_in_flight=jobs_in_flight,
        estimator_shots=ESTIMATOR_SHOTS,
        one_shot_count_per_job=True,
    )


# -- the backends ---------------------------------------------------------------------------------
def local_device(density_matrix: bool) -> Any:
    from braket.devices import LocalSimulator

    with numba_settings_kept():
        import braket.default_simulator.linalg_utils  # noqa: F401  (what changes them)

        return LocalSimulator("braket_dm" if density_matrix else "braket_sv")


@contextmanager
def numba_settings_kept() -> Iterator[None]:
    """Numba's process-wide thread count and threading layer as they were: Braket's default
    simulator sets them (-1 and "workqueue") as it is imported, and with a thread count
    that no longer matches the environment Numba's next compilation in this process fails
    once its threads have started ("Cannot set NUMBA_NUM_THREADS ...")."""
    from numba.core import config

    kept = {name: getattr(config, name) for name in ("NUMBA_NUM_THREADS", "THREADING_LAYER")}
    try:
        yield
    finally:
        for name, value in kept.items():
            setattr(config, name, value)


def noise_model() -> Any:
    """braket-local:dm's noise (``NOISE``), as Braket's own NoiseModel applies it."""
    from braket.circuits import Gate, noises
    from braket.circuits.noise_model import GateCriteria, MeasureCriteria, NoiseModel

    one = [Gate.H, Gate.X, Gate.Rx, Gate.Ry, Gate.Rz]
    two = [Gate.ZZ, Gate.CNot, Gate.CZ]
    return (
        NoiseModel()
        .add_noise(noises.Depolarizing(NOISE["one_qubit"]), GateCriteria(one))
        .add_noise(noises.TwoQubitDepolarizing(NOISE["two_qubit"]), GateCriteria(two))
        .add_noise(noises.BitFlip(NOISE["readout"]), MeasureCriteria())
    )


LOCAL_BASIS = ("h", "x", "rx", "ry", "rz", "rzz", "cx")


def make_local(argument: str, max_qubits: int, resolve: Callable[[str], Backend]) -> Backend:
    if argument not in ("", "dm"):
        raise ConfigError(f"braket-local takes no argument or 'dm', not {argument!r}")
    density = argument == "dm"
    name = "braket-local:dm" if density else "braket-local"
    qubits = min(max_qubits, DENSITY_MATRIX_QUBITS) if density else max_qubits
    device = local_device(density)
    return Backend(
        name=name,
        solver_path=SolverPath.SIMULATOR,
        target=BraketTarget(name, qubits, LOCAL_BASIS),
        runner=BraketRunner(lambda: device, local=True, noise=noise_model() if density else None),
        costs=LocalSimulatorCosts(density),
        errors=ERRORS,
        capabilities=Capabilities(exact_statevector=not density, local=True, own_shots=True),
        limits=program_set_limits(device, jobs_in_flight=1),
    )
