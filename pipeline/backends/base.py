"""The backend interface, its one error boundary, and the registry of spec strings.

A backend describes its target (for the transpiler), runs jobs (submit, poll, result,
cancel), says what a workload would cost and how long it would take, bills what an
attempt did cost, and explains in words why a problem does not fit it. Errors of the
libraries underneath are mapped onto :mod:`pipeline.errors` in exactly one place,
:func:`translate_error`, used by every method that talks to a provider.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any, Literal, Protocol

from qiskit.primitives import BaseEstimatorV2, BaseSamplerV2
from qiskit.transpiler import StagedPassManager, Target

from pipeline.config import PriceSettings
from pipeline.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    PermanentBackendError,
    TransientBackendError,
)

Kind = Literal["estimator", "sampler"]


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"


class BackendJob(Protocol):
    """What qiskit's PrimitiveJob, the runtime's RuntimeJobV2 and our fakes all offer."""

    def job_id(self) -> str: ...
    def status(self) -> Any: ...
    def result(self) -> Any: ...
    def cancel(self) -> Any: ...


@dataclass(frozen=True)
class Workload:
    """What a batch would ask of a backend, counted before it runs."""

    problems: int
    n_qubits: int
    gates: int  # per circuit, before transpilation
    calls: int  # primitive jobs: grid, refinement steps, sampling
    evaluations: int  # parameter sets over all estimator calls
    shots: int  # over all sampler calls


@dataclass(frozen=True)
class Estimate:
    """A backend's own estimate for a workload; ``reason`` is None when it can take it."""

    cost_usd: float
    queue_s: float
    execute_s: float
    memory_bytes: int
    reason: str | None = None


_STATES = {
    "INITIALIZING": JobState.QUEUED,
    "QUEUED": JobState.QUEUED,
    "VALIDATING": JobState.QUEUED,
    "RUNNING": JobState.RUNNING,
    "DONE": JobState.DONE,
    "ERROR": JobState.ERROR,
    "CANCELLED": JobState.CANCELLED,
}


class QuantumBackend(ABC):
    """What the engine and the router need from a place that runs circuits."""

    name: str
    solver_path: str  # "simulator" or "qpu"
    max_qubits: int
    local: bool = False  # jobs run in this process (a simulator), not at a provider

    # -- target description --------------------------------------------------------------
    @property
    @abstractmethod
    def target_label(self) -> str:
        """Identifies the compilation target: part of every template's artifact key."""

    @property
    @abstractmethod
    def target(self) -> Target:
        """The transpiler's view of the device: basis gates, coupling map, qubit count."""

    @abstractmethod
    def pass_manager(self) -> StagedPassManager:
        """The transpiler for this target, built once per process."""

    def incompatibility(self, n_qubits: int) -> str | None:
        """Why a problem of this size cannot run here, or None if it can."""
        if n_qubits > self.max_qubits:
            return f"needs {n_qubits} qubits; {self.name} takes at most {self.max_qubits}"
        return None

    # -- primitives and jobs -------------------------------------------------------------
    @abstractmethod
    def primitive(self, kind: Kind, shots: int, seed: int) -> BaseEstimatorV2 | BaseSamplerV2:
        """The provider's own V2 primitive, bound to this target."""

    def estimator(self, seed: int) -> BaseEstimatorV2:
        estimator = self.primitive("estimator", 0, seed)
        assert isinstance(estimator, BaseEstimatorV2)
        return estimator

    def sampler(self, shots: int, seed: int) -> BaseSamplerV2:
        sampler = self.primitive("sampler", shots, seed)
        assert isinstance(sampler, BaseSamplerV2)
        return sampler

    def submit(self, kind: Kind, pubs: Sequence[Any], shots: int, seed: int) -> BackendJob:
        """Hand one primitive call to the provider; returns at once with a job."""
        with mapped_errors():
            cache: dict[tuple[Kind, int, int], Any] = self.__dict__.setdefault("_primitives", {})
            if (kind, shots, seed) not in cache:
                if len(cache) > 16:
                    cache.clear()
                cache[kind, shots, seed] = self.primitive(kind, shots, seed)
            job: BackendJob = cache[kind, shots, seed].run(list(pubs))
            return job

    def poll(self, job: BackendJob) -> JobState:
        with mapped_errors():
            status = job.status()
        return _STATES.get(str(getattr(status, "name", status)).upper(), JobState.RUNNING)

    def result(self, job: BackendJob, submit_timeout_s: float, execute_timeout_s: float) -> Any:
        """Wait for ``job``: at most ``submit_timeout_s`` queued, ``execute_timeout_s`` running.

        A provider's job is polled with a delay that doubles from 1 ms to 250 ms, so it is
        not hammered. A local job is polled every twentieth of the time it has taken so
        far: doubling would notice a 100 ms job up to 100 ms late, and a worker sat idle
        that long on every sampling call. A job past either limit is cancelled.
        """
        started = time.monotonic()
        running_since: float | None = None
        delay = 0.001
        while True:
            state = self.poll(job)
            now = time.monotonic()
            if state in (JobState.DONE, JobState.ERROR, JobState.CANCELLED):
                break
            if state is JobState.QUEUED and now - started > submit_timeout_s:
                self.cancel(job)
                raise BackendTimeout(f"job {job.job_id()} still queued after {submit_timeout_s:g}s")
            if state is JobState.RUNNING:
                running_since = running_since or now
                if now - running_since > execute_timeout_s:
                    self.cancel(job)
                    raise BackendTimeout(
                        f"job {job.job_id()} still running after {execute_timeout_s:g}s"
                    )
            time.sleep(delay)
            waited = time.monotonic() - started
            delay = min(max(waited / 20, 0.001) if self.local else delay * 2, 0.25)
        with mapped_errors():
            return job.result()

    def cancel(self, job: BackendJob) -> None:
        """Best effort: a job that already finished or cannot be reached stays as it is."""
        with contextlib.suppress(Exception):
            job.cancel()

    # -- economics -----------------------------------------------------------------------
    def estimate(self, work: Workload, prices: PriceSettings, memory_limit: int) -> Estimate:
        """A statevector simulator's model; QPU and noisy backends override it."""
        memory = 16 * 2**work.n_qubits
        # Measured on Aer 0.18 with one thread: ~5 ms per primitive call, ~1 ms per
        # parameter set (binding and setup), and ~4 ns per amplitude per gate.
        execute_s = work.calls * 5e-3 + (work.evaluations + work.problems) * (
            1e-3 + 4e-9 * work.gates * 2**work.n_qubits
        )
        cost = (
            execute_s * prices.cpu_usd_per_core_second + work.shots * prices.simulator_usd_per_shot
        )
        reason = None
        if memory > memory_limit:
            reason = (
                f"statevector of {work.n_qubits} qubits needs {memory} bytes; limit {memory_limit}"
            )
        return Estimate(cost, 0.0, execute_s, memory, reason)

    def bill(self, job: BackendJob, run_s: float, shots: int, prices: PriceSettings) -> float:
        """What one attempt cost; a simulator bills the CPU time it held."""
        return run_s * prices.cpu_usd_per_core_second + shots * prices.simulator_usd_per_shot


def translate_error(exc: BaseException) -> BackendError:
    """The one place where errors of the libraries underneath become qhopper's.

    Transient: timeouts, rate limits (429), network errors, provider 5xx, queue overflow.
    Permanent: invalid input or circuit, unsupported target, authentication (401/403),
    and anything unknown (retrying what we do not understand only wastes budget).
    """
    if isinstance(exc, BackendError):
        return exc
    status = getattr(exc, "status_code", None) or getattr(
        getattr(exc, "response", None), "status_code", None
    )
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(status, int) and status > 0:
        if status in (401, 403):
            return PermanentBackendError(f"not authorised ({status}): {text}")
        if status == 503:
            return BackendUnavailable(f"provider unavailable (503): {text}")
        if status in (408, 409, 425, 429) or status >= 500:
            return TransientBackendError(f"provider answered {status}: {text}")
        return PermanentBackendError(f"provider refused the request ({status}): {text}")
    name = type(exc).__name__
    if name == "RuntimeJobMaxTimeoutError":  # the job's own time limit: it would repeat
        return PermanentBackendError(f"job exceeded its maximum execution time: {text}")
    if isinstance(exc, TimeoutError | concurrent.futures.TimeoutError) or "Timeout" in name:
        return BackendTimeout(text)
    if isinstance(exc, ConnectionError) or name in {
        "ConnectionError",
        "ReadTimeout",
        "ChunkedEncodingError",
    }:
        return TransientBackendError(f"network: {text}")
    lowered = str(exc).lower()
    if any(
        word in lowered for word in ("queue is full", "too many jobs", "rate limit", "try again")
    ):
        return TransientBackendError(text)
    if name in {"IBMNotAuthorizedError", "IBMAccountError", "AuthenticationLicenseError"}:
        return PermanentBackendError(f"not authorised: {text}")
    if name == "QiskitBackendNotFoundError":
        return PermanentBackendError(f"unsupported target: {text}")
    return PermanentBackendError(text)


@contextlib.contextmanager
def mapped_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        mapped = translate_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc


# -- registry ------------------------------------------------------------------------------
_REGISTRY: dict[str, Callable[[str, int], QuantumBackend]] = {}


class WrappedBackend(QuantumBackend, ABC):
    """A backend that adds behaviour around another and compiles exactly as it does.

    Wrappers (metering, fault injection) change how calls are made, never the target, so
    templates compiled for the inner backend are the same artifacts for the wrapper.
    """

    def __init__(self, inner: QuantumBackend, name: str) -> None:
        self.inner = inner
        self.name = name
        self.solver_path = inner.solver_path
        self.max_qubits = inner.max_qubits

    @property
    def target_label(self) -> str:
        return self.inner.target_label

    @property
    def target(self) -> Target:
        return self.inner.target

    def pass_manager(self) -> StagedPassManager:
        return self.inner.pass_manager()


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
    """Backend for ``name[:argument]``; one instance per process, so pass managers are reused.

    ``aer``, ``aer-noisy:fake_brisbane``, ``ibm:ibm_torino`` (``ibm:fake_manila`` runs the
    runtime's local testing mode), ``faulty:aer?transient=0.3&latency=10ms``.
    """
    _load_builtin()
    name, _, argument = spec.partition(":")
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown backend {spec!r}; known backends: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name](argument, max_qubits)


def _load_builtin() -> None:
    from pipeline.backends import aer, aer_noisy, faulty, ibm  # noqa: F401  (register themselves)
