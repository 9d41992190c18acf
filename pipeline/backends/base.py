"""A backend is three parts and some flags: a target, a job runner and a cost model.

* The **target** is what compilation needs: the transpiler's view of the device, its
  pass manager, a label that goes into every template's artifact key, a qubit limit and
  a sentence saying why a problem does not fit.
* The **job runner** submits one primitive call, polls it, waits for its result within
  timeouts and cancels it. It raises the provider's own exceptions; the backend's
  **error table** maps them onto :mod:`pipeline.errors` at the one boundary where every
  job call is made (:mod:`pipeline.backends.calls`), by exception type, never by text.
* The **cost model** estimates a workload before it runs and bills an attempt after.
* **Capabilities** are flags the engine decides on (never the backend's name).
* **Limits** are what one provider job may hold (:mod:`pipeline.backends.limits`): every
  call is cut into jobs within them where it is made (:mod:`pipeline.backends.calls`).

Wrappers (the ``faulty:`` fake provider) replace the runner, cost model and error table
and keep the target, so templates compiled for the inner backend stay valid. Nothing
here imports qiskit at run time: the registry and the CLI's spec check stay fast.
"""

from __future__ import annotations

import contextlib
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.backends.limits import ProviderLimits, jobs_needed
from pipeline.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    PermanentBackendError,
    TransientBackendError,
)
from pipeline.memory import fast_path_bytes
from pipeline.vocabulary import SolverPath

if TYPE_CHECKING:
    from qiskit.transpiler import StagedPassManager, Target

    from pipeline.config import PriceSettings


class Primitive(StrEnum):
    """The two Qiskit primitives a backend runs: expectation values, or samples."""

    ESTIMATOR = "estimator"
    SAMPLER = "sampler"


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
    """What a batch would ask of a backend, counted before it runs.

    ``exact``: the engine will evaluate expectations with its exact fast simulator (the
    backend declares ``exact_statevector``), so only sampling calls reach the backend.
    """

    problems: int
    n_qubits: int
    gates: int  # per circuit, before transpilation
    calls: int  # primitive jobs: grid, refinement steps, sampling
    evaluations: int  # parameter sets over all estimator calls
    shots: int  # over all sampler calls
    exact: bool = False
    chunk_problems: int = 0  # the most problems one worker holds at once (0: all of them)

    def jobs(self, limits: ProviderLimits) -> int:
        """Provider jobs the calls make under ``limits``: one a call, more where a call's
        executables do not fit one job. Each chunk's last call samples its problems (one
        executable each, their shots); the other calls share the evaluations."""
        chunks = math.ceil(self.problems / self.chunk_problems) if self.chunk_problems else 1
        sampling = min(chunks, self.calls)
        estimating = self.calls - sampling
        shots = math.ceil(self.shots / max(self.problems, 1))
        jobs = sampling * jobs_needed(limits, math.ceil(self.problems / max(sampling, 1)), shots)
        if estimating:
            jobs += estimating * jobs_needed(limits, math.ceil(self.evaluations / estimating))
        return jobs


@dataclass(frozen=True)
class Estimate:
    """A backend's own estimate for a workload; ``reason`` is None when it can take it."""

    cost_usd: float
    queue_s: float
    execute_s: float
    memory_bytes: int
    reason: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """What the engine may rely on, declared by the backend rather than guessed from its name.

    ``exact_statevector``: expectations equal an ideal statevector's, so the engine's exact
    diagonal simulator may stand in for estimator calls. ``local``: jobs run in this
    process (a simulator), so they are polled tightly and bill CPU time. ``own_shots``: the
    answers' shots are measured on the backend even where the engine's exact simulator computes
    the expectations (a vendor's simulator, there to be used and compared).
    """

    exact_statevector: bool = False
    local: bool = False
    own_shots: bool = False


# -- the target ----------------------------------------------------------------------------
class CompileTarget(ABC):
    """What the transpiler needs; ``label`` keys every template compiled for it. ``is_device``:
    a device's qubits (a QPU, or a local stand-in for one), where problems may be packed side
    by side and every optimiser step is a billed job."""

    is_device = False

    def __init__(self, name: str, max_qubits: int) -> None:
        self.name = name
        self.max_qubits = max_qubits

    @property
    @abstractmethod
    def label(self) -> str:
        """Identifies the compilation target: part of every template's artifact key."""

    @property
    @abstractmethod
    def transpiler_target(self) -> Target:
        """The transpiler's view of the device: basis gates, coupling map, qubit count."""

    @abstractmethod
    def _build_pass_manager(self) -> StagedPassManager: ...

    @cached_property
    def _pass_manager(self) -> StagedPassManager:
        return self._build_pass_manager()

    def pass_manager(self) -> StagedPassManager:
        """The transpiler for this target, built once per process."""
        return self._pass_manager

    def why_not(self, n_qubits: int) -> str | None:
        """Why a problem of this size cannot run here, or None if it can."""
        if n_qubits > self.max_qubits:
            return f"needs {n_qubits} qubits; {self.name} takes at most {self.max_qubits}"
        return None


# -- the job runner ------------------------------------------------------------------------
_STATES = {
    "INITIALIZING": JobState.QUEUED,
    "QUEUED": JobState.QUEUED,
    "VALIDATING": JobState.QUEUED,
    "RUNNING": JobState.RUNNING,
    "DONE": JobState.DONE,
    "ERROR": JobState.ERROR,
    "CANCELLED": JobState.CANCELLED,
}


class JobRunner(ABC):
    """Runs primitive calls as jobs; raises the provider's own exceptions (see ErrorTable)."""

    local = False  # jobs run in this process: poll tightly

    @abstractmethod
    def submit(self, kind: Primitive, pubs: Sequence[Any], shots: int, seed: int) -> BackendJob:
        """Hand one primitive call to the provider; returns at once with a job."""

    def poll(self, job: BackendJob) -> JobState:
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
        return job.result()

    def cancel(self, job: BackendJob) -> None:
        """Best effort: a job that already finished or cannot be reached stays as it is."""
        with contextlib.suppress(Exception):
            job.cancel()


class PrimitiveRunner(JobRunner):
    """Jobs from the provider's own V2 primitives, built once per (kind, shots, seed)."""

    def __init__(self) -> None:
        self._primitives: dict[tuple[Primitive, int, int], Any] = {}

    @abstractmethod
    def primitive(self, kind: Primitive, shots: int, seed: int) -> Any:
        """The provider's EstimatorV2 or SamplerV2, bound to this target."""

    def submit(self, kind: Primitive, pubs: Sequence[Any], shots: int, seed: int) -> BackendJob:
        cache = self._primitives
        if (kind, shots, seed) not in cache:
            if len(cache) > 16:
                cache.clear()
            cache[kind, shots, seed] = self.primitive(kind, shots, seed)
        job: BackendJob = cache[kind, shots, seed].run(list(pubs))
        return job


# -- the cost model ------------------------------------------------------------------------
class CostModel(ABC):
    @abstractmethod
    def estimate(self, work: Workload, prices: PriceSettings, memory_limit: int) -> Estimate:
        """What ``work`` would cost and take here; ``reason`` says why it cannot run."""

    def bill(self, job: BackendJob, run_s: float, shots: int, prices: PriceSettings) -> float:
        """What one attempt cost; a simulator bills the CPU time it held."""
        return run_s * prices.cpu_usd_per_core_second


class StatevectorCosts(CostModel):
    """An ideal statevector simulator on one core."""

    def estimate(self, work: Workload, prices: PriceSettings, memory_limit: int) -> Estimate:
        # A complex128 statevector per primitive call; on the fast path, what the engine's
        # exact simulator holds for all the problems plus Aer's sampling (the larger).
        memory = 16 * 2**work.n_qubits
        if work.exact:
            memory = fast_path_bytes(work.n_qubits, work.chunk_problems or work.problems)
        # Measured on Aer 0.18 with one thread: ~5 ms per primitive call, ~1 ms per
        # parameter set (binding and setup), and ~4 ns per amplitude per gate.
        per_set = 1e-3 + 4e-9 * work.gates * 2**work.n_qubits
        if work.exact:
            # Expectations come from the engine's exact simulator (~0.5 ns per amplitude
            # per gate: 0.13 ms an evaluation at 12 qubits, p=2); only sampling reaches Aer.
            execute_s = 5e-3 + work.problems * per_set
            execute_s += work.evaluations * 5e-10 * work.gates * 2**work.n_qubits
        else:
            execute_s = work.calls * 5e-3 + (work.evaluations + work.problems) * per_set
        cost = execute_s * prices.cpu_usd_per_core_second
        reason = None
        if memory > memory_limit:
            held = work.chunk_problems or work.problems
            where = f" on the fast path ({held} problems a chunk)" if work.exact else ""
            reason = (
                f"statevector of {work.n_qubits} qubits{where} needs {memory} bytes;"
                f" limit {memory_limit}"
            )
        return Estimate(cost, 0.0, execute_s, memory, reason)


# -- the error table -----------------------------------------------------------------------
def error_for_status(status: int, text: str) -> BackendError:
    """An HTTP status as qhopper's error: auth and bad requests are permanent."""
    if status <= 0:  # the request never got an answer
        return TransientBackendError(f"network: {text}")
    if status in (401, 403):
        return PermanentBackendError(f"not authorised ({status}): {text}")
    if status == 503:
        return BackendUnavailable(f"provider unavailable (503): {text}")
    if status in (408, 409, 425, 429) or status >= 500:
        return TransientBackendError(f"provider answered {status}: {text}")
    return PermanentBackendError(f"provider refused the request ({status}): {text}")


@dataclass(frozen=True)
class ErrorRule:
    """Exceptions of ``types`` become ``error``, or are judged by their HTTP ``status``."""

    types: tuple[type[BaseException], ...]
    error: type[BackendError] = PermanentBackendError
    status: Callable[[BaseException], int] | None = None

    @classmethod
    def http(cls, *types: type[BaseException], attribute: str = "status_code") -> ErrorRule:
        """A rule for exception types that carry the provider's HTTP status code."""
        return cls(types, status=lambda exc: int(getattr(exc, attribute, -1)))


# Rules every backend shares; a backend's own rules are tried first.
COMMON_RULES = (
    ErrorRule((TimeoutError,), BackendTimeout),  # concurrent.futures.TimeoutError too
    ErrorRule((ConnectionError,), TransientBackendError),
)


@dataclass(frozen=True)
class ErrorTable:
    """A backend's own exception types mapped onto :mod:`pipeline.errors`; unknown: permanent.

    Retrying what we do not understand only wastes budget, so anything no rule names is
    a :class:`PermanentBackendError`.
    """

    rules: tuple[ErrorRule, ...] = ()

    def extended(self, *rules: ErrorRule) -> ErrorTable:
        """This table with ``rules`` tried before its own (a wrapper's errors first)."""
        return ErrorTable((*rules, *self.rules))

    def translate(self, exc: BaseException) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        text = f"{type(exc).__name__}: {exc}"
        for rule in (*self.rules, *COMMON_RULES):
            if isinstance(exc, rule.types):
                if rule.status is not None:
                    return error_for_status(rule.status(exc), text)
                return rule.error(text)
        return PermanentBackendError(text)


# -- the backend ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Backend:
    """A place that runs circuits: ``name`` is its spec string, ``solver_path`` what results say."""

    name: str
    solver_path: SolverPath  # SIMULATOR or QPU
    target: CompileTarget
    runner: JobRunner
    costs: CostModel
    errors: ErrorTable = field(default_factory=ErrorTable)
    capabilities: Capabilities = field(default_factory=Capabilities)
    limits: ProviderLimits = field(default_factory=ProviderLimits)  # default: none
