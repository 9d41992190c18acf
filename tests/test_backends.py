"""The backend interface, its error tables, the fault wrapper, the call policy (routing
economics: test_routing.py).

Everything runs offline on real simulators: Aer, Aer with a fake device's noise model, and
qiskit-ibm-runtime's local testing mode. Fault rates of 0 or 1 and millisecond latencies
make every outcome certain.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from qiskit import QuantumCircuit
from qiskit.providers.exceptions import QiskitBackendNotFoundError
from qiskit_aer import AerError
from qiskit_ibm_runtime.api.exceptions import RequestsApiError
from qiskit_ibm_runtime.exceptions import (
    IBMNotAuthorizedError,
    RuntimeJobMaxTimeoutError,
    RuntimeJobTimeoutError,
)

from pipeline.backends import (
    BackendCaller,
    CallPolicy,
    ErrorTable,
    JobState,
    Ledger,
    aer,
    check_backend_spec,
    get_backend,
    ibm,
    known_backends,
)
from pipeline.backends import base as backend_base
from pipeline.backends.devices import fake_device
from pipeline.backends.faulty import Faults, ProviderHTTPError
from pipeline.backends.ibm import Credentials
from pipeline.config import RetrySettings
from pipeline.errors import (
    BackendTimeout,
    BackendUnavailable,
    BudgetExhausted,
    ConfigError,
    DeadlineExceeded,
    PermanentBackendError,
    TransientBackendError,
)
from pipeline.qaoa.evaluators import uses_fast_path

FAST = CallPolicy(retry=RetrySettings(max_attempts=3, backoff_initial_s=0.001, backoff_max_s=0.005))


def bell() -> QuantumCircuit:
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    return circuit


def test_known_backends_and_unknown_specs_name_the_known_ones() -> None:
    assert known_backends() == ["aer", "aer-noisy", "braket", "braket-local", "faulty", "ibm"]
    with pytest.raises(ConfigError, match="known backends: aer, aer-noisy, braket, braket-local"):
        get_backend("cirq:sv1", 16)
    with pytest.raises(ConfigError, match="braket needs a device ARN"):
        check_backend_spec("braket:sv1")
    with pytest.raises(ConfigError, match="braket-local takes no argument or 'dm'"):
        check_backend_spec("braket-local:mps")
    with pytest.raises(ConfigError, match="fake_brisbane"):
        get_backend("aer-noisy:fake_nowhere", 16)


GOOD_SPECS = [  # spec, solver path, target, its qubits (of max_qubits=16), faults parsed
    ("aer", "simulator", "aer", 16, None),
    ("aer-noisy:fake_manila", "simulator", "aer-noisy:fake_manila", 5, None),
    ("ibm:ibm_torino", "qpu", "ibm:ibm_torino", 5, None),  # device faked below (manila: 5)
    ("ibm:fake_manila", "simulator", "ibm:fake_manila", 5, None),
    ("faulty:aer", "simulator", "aer", 16, Faults()),
    (
        "faulty:aer?transient=0.3&latency=2s&seed=4",
        "simulator",
        "aer",
        16,
        Faults(transient=0.3, latency=2.0, seed=4),
    ),
    (
        "faulty:aer-noisy:fake_brisbane?outage=1",
        "simulator",
        "aer-noisy:fake_brisbane",
        12,  # a density matrix of 12 qubits at most, of the device's 127
        Faults(outage=1.0),
    ),
]


@pytest.mark.parametrize(
    ("spec", "solver_path", "target", "qubits", "faults"),
    GOOD_SPECS,
    ids=[case[0] for case in GOOD_SPECS],
)
def test_good_specs_pass_the_check(
    spec: str,
    solver_path: str,
    target: str,
    qubits: int,
    faults: Faults | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A spec the check passes builds the backend it names: its name, what results will call
    its path, the target it compiles for and, behind ``faulty:``, the parsed fault options."""
    assert check_backend_spec(spec) is None
    if spec == "ibm:ibm_torino":  # no account here: the runtime service answers with a fake
        asked: list[str] = []

        def connect(device: str) -> object:
            asked.append(device)
            return fake_device("fake_manila")

        monkeypatch.setattr(ibm, "connect", connect)
        backend = ibm.make("ibm_torino", 16, lambda inner: get_backend(inner, 16))
        assert asked == ["ibm_torino"]
    else:
        backend = get_backend(spec, 16)
    assert (backend.name, backend.solver_path) == (spec, solver_path)
    assert (backend.target.name, backend.target.max_qubits) == (target, qubits)
    if faults is None:
        assert not spec.startswith("faulty:")
    else:  # the inner backend's own target (same templates), the options parsed
        inner = spec.removeprefix("faulty:").partition("?")[0]
        assert backend.target is get_backend(inner, 16).target
        assert backend.runner.faults == faults  # type: ignore[attr-defined]
        assert not backend.capabilities.exact_statevector


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cirq:sv1", "unknown backend 'cirq:sv1'; known backends: aer, aer-noisy, braket"),
        ("braket:sv1", "braket needs a device ARN"),
        ("aer:gpu", "aer takes no argument"),
        ("aer-noisy", "needs a fake device"),
        ("aer-noisy:fake_nowhere", "unknown fake device 'fake_nowhere'; known: .*fake_brisbane"),
        ("ibm", "ibm needs a device name"),
        ("ibm:fake_nowhere", "unknown fake device"),
        ("faulty", "needs an inner backend"),
        ("faulty:?transient=0.3", "needs an inner backend"),
        ("faulty:aer?transient=0.3&colour=red", "unknown option 'colour'"),
        ("faulty:aer?transient=lots", "not a number or duration"),
        ("faulty:aer?transient", "malformed options"),
        ("faulty:aer?latency=-1s", "must not be negative"),
        ("faulty:cirq?transient=0.1", "unknown backend 'cirq'"),
    ],
)
def test_bad_specs_are_rejected_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        check_backend_spec(spec)
    assert "\n" not in str(caught.value)


def test_checking_a_spec_imports_no_qiskit() -> None:
    code = (
        "import sys, time\n"
        "from pipeline.backends import check_backend_spec\n"
        "started = time.perf_counter()\n"
        "check_backend_spec('faulty:aer-noisy:fake_manila?transient=0.3&latency=2s')\n"
        "took = time.perf_counter() - started\n"
        "assert not [m for m in sys.modules if m.split('.')[0].startswith('qiskit')], 'qiskit'\n"
        "assert took < 0.1, took\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


AER, IBM = aer.ERRORS, ibm.ERRORS
FAULTY = get_backend("faulty:aer", 16).errors


@pytest.mark.parametrize(
    ("table", "error", "expected"),
    [
        (FAULTY, ProviderHTTPError(429, "rate limited"), TransientBackendError),
        (FAULTY, ProviderHTTPError(500, "internal"), TransientBackendError),
        (FAULTY, ProviderHTTPError(503, "unavailable"), BackendUnavailable),
        (FAULTY, ProviderHTTPError(401, "bad token"), PermanentBackendError),
        (FAULTY, ProviderHTTPError(400, "invalid circuit"), PermanentBackendError),
        (FAULTY, ConnectionResetError("reset by peer"), TransientBackendError),
        (FAULTY, AerError("too many qubits"), PermanentBackendError),  # the inner table too
        (AER, AerError("invalid circuit"), PermanentBackendError),
        (AER, ProviderHTTPError(503, "not Aer's"), PermanentBackendError),  # not in its table
        (AER, concurrent.futures.TimeoutError(), BackendTimeout),
        (IBM, RequestsApiError("bad gateway", status_code=502), TransientBackendError),
        (IBM, RequestsApiError("down", status_code=503), BackendUnavailable),
        (IBM, RequestsApiError("forbidden", status_code=403), PermanentBackendError),
        (IBM, RequestsApiError("no response"), TransientBackendError),  # status -1
        (IBM, RuntimeJobTimeoutError("waited too long"), BackendTimeout),
        (IBM, requests.ReadTimeout("read timed out"), BackendTimeout),
        (IBM, requests.ConnectionError("connection aborted"), TransientBackendError),
        (IBM, IBMNotAuthorizedError("no access"), PermanentBackendError),
        (IBM, RuntimeJobMaxTimeoutError("ran past max_execution_time"), PermanentBackendError),
        (IBM, QiskitBackendNotFoundError("no such backend"), PermanentBackendError),
        (IBM, TimeoutError("read timed out"), BackendTimeout),
        (IBM, ConnectionResetError("reset by peer"), TransientBackendError),
        # Unknown types are permanent, whatever their message says: no text matching.
        (IBM, RuntimeError("the job queue is full, try again later"), PermanentBackendError),
        (ErrorTable(), ValueError("Timeout: 503 rate limit"), PermanentBackendError),
    ],
)
def test_each_backend_maps_its_own_exceptions(
    table: ErrorTable, error: Exception, expected: type
) -> None:
    mapped = table.translate(error)
    assert type(mapped) is expected, mapped
    assert table.translate(mapped) is mapped  # already mapped: passes through


def test_provider_errors_are_mapped_where_the_call_is_made() -> None:
    ledger = Ledger()
    caller = BackendCaller(get_backend("faulty:aer?outage=1&seed=21", 16), FAST, ledger)
    with pytest.raises(BackendUnavailable) as caught:
        caller.sample([bell()], 8)
    assert isinstance(caught.value.__cause__, BackendUnavailable)  # retries exhausted
    assert isinstance(caught.value.__cause__.__cause__, ProviderHTTPError)  # the raw 503
    assert ledger.errors[0].startswith("BackendUnavailable: provider unavailable (503)")


@pytest.mark.parametrize(
    ("spec", "fast"),
    [
        ("aer", True),
        ("faulty:aer", False),
        ("aer-noisy:fake_manila", False),
        ("ibm:fake_manila", False),
    ],
)
def test_only_a_backend_declaring_an_exact_statevector_gets_the_fast_path(
    spec: str, fast: bool
) -> None:
    backend = get_backend(spec, 16)
    assert backend.capabilities.exact_statevector is fast
    assert uses_fast_path(backend, 5) is fast
    assert not uses_fast_path(backend, 25)  # beyond the fast simulator's size


def test_a_wrapper_keeps_the_target_and_replaces_the_jobs() -> None:
    inner, wrapped = get_backend("aer", 16), get_backend("faulty:aer?latency=1ms", 16)
    assert wrapped.target is inner.target and wrapped.runner is not inner.runner
    assert wrapped.name == "faulty:aer?latency=1ms" and wrapped.solver_path == "simulator"
    assert not wrapped.capabilities.local and inner.capabilities.local
    assert inner.target.why_not(16) is None
    assert inner.target.why_not(17) == "needs 17 qubits; aer takes at most 16"


def test_aer_jobs_submit_poll_result_cancel() -> None:
    runner = get_backend("aer", 16).runner
    job = runner.submit("sampler", [bell()], 64, 5)
    assert job.job_id()
    result = runner.result(job, 5.0, 5.0)
    assert runner.poll(job) is JobState.DONE
    assert set(result[0].data.meas.get_counts()) <= {"00", "11"}
    runner.cancel(job)  # a finished job stays finished
    assert get_backend("aer", 16).target.transpiler_target.num_qubits is not None


class _VirtualClock:
    """Stands in for the ``time`` module: sleeping advances the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class _JobDoneAt:
    def __init__(self, clock: _VirtualClock, done_at: float) -> None:
        self.clock, self.done_at = clock, done_at

    def status(self) -> str:
        return "DONE" if self.clock.now >= self.done_at else "RUNNING"

    def result(self) -> str:
        return "answer"

    def job_id(self) -> str:
        return "job-1"

    def cancel(self) -> None:
        return None


@pytest.mark.parametrize(("spec", "local"), [("aer", True), ("faulty:aer", False)])
def test_local_jobs_are_noticed_at_once_and_provider_jobs_are_not_hammered(
    monkeypatch: pytest.MonkeyPatch, spec: str, local: bool
) -> None:
    clock = _VirtualClock()
    monkeypatch.setattr(backend_base, "time", clock)
    backend = get_backend(spec, 16)
    assert backend.capabilities.local is local is backend.runner.local
    assert backend.runner.result(_JobDoneAt(clock, 0.1), 5.0, 5.0) == "answer"  # type: ignore[arg-type]
    if local:  # a simulator's job: noticed within a twentieth of its time
        assert clock.now <= 0.1 * 1.05 + 0.001
    else:  # a provider's: a handful of status calls, never more than 4 a second
        assert len(clock.sleeps) <= 8 and max(clock.sleeps) <= 0.25


def test_faulty_jobs_queue_then_run_then_finish() -> None:
    runner = get_backend("faulty:aer?queue=30ms&latency=30ms", 16).runner
    job = runner.submit("sampler", [bell()], 32, 1)
    assert runner.poll(job) is JobState.QUEUED
    result = runner.result(job, 5.0, 5.0)
    assert runner.poll(job) is JobState.DONE and result[0].data.meas.num_shots == 32


def test_a_job_queued_past_the_submission_timeout_is_cancelled() -> None:
    runner = get_backend("faulty:aer?queue=5s", 16).runner
    job = runner.submit("sampler", [bell()], 32, 1)
    with pytest.raises(BackendTimeout, match="still queued"):
        runner.result(job, 0.02, 5.0)
    assert runner.poll(job) is JobState.CANCELLED


def test_a_job_running_past_the_execution_timeout_is_cancelled() -> None:
    runner = get_backend("faulty:aer?latency=5s", 16).runner
    job = runner.submit("sampler", [bell()], 32, 1)
    with pytest.raises(BackendTimeout, match="still running"):
        runner.result(job, 5.0, 0.02)


def test_transient_errors_are_retried_up_to_the_bound_then_open_the_breaker() -> None:
    ledger = Ledger()
    caller = BackendCaller(get_backend("faulty:aer?transient=1&seed=1", 16), FAST, ledger)
    for _ in range(FAST.retry.breaker_threshold):
        with pytest.raises(TransientBackendError, match=r"(retries exhausted|down): 3 attempts"):
            caller.sample([bell()], 32, 1)
    assert ledger.attempts == ledger.failures == 3 * FAST.retry.breaker_threshold
    assert ledger.max_attempts_per_call == 3
    with pytest.raises(BackendUnavailable, match="circuit open"):
        caller.sample([bell()], 32, 1)
    assert ledger.attempts == 3 * FAST.retry.breaker_threshold  # the open breaker spent nothing


def test_one_exhausted_call_does_not_open_the_breaker() -> None:
    backend = get_backend("faulty:aer?transient=1&seed=9", 16)
    ledger = Ledger()
    caller = BackendCaller(backend, FAST, ledger)
    with pytest.raises(TransientBackendError, match="attempts on one call"):
        caller.sample([bell()], 8, 1)
    with pytest.raises(TransientBackendError, match="attempts on one call"):  # tried again
        caller.sample([bell()], 8, 1)
    assert ledger.attempts == 6


def test_permanent_errors_are_raised_at_once() -> None:
    ledger = Ledger()
    caller = BackendCaller(get_backend("faulty:aer?permanent=1&seed=2", 16), FAST, ledger)
    with pytest.raises(PermanentBackendError, match="invalid circuit"):
        caller.sample([bell()], 32, 1)
    assert (ledger.attempts, ledger.failures) == (1, 1)
    assert ledger.cost_usd > 0 and len(ledger.job_ids) == 1  # it ran, and is billed


def test_a_flaky_call_succeeds_and_every_attempt_is_recorded() -> None:
    ledger = Ledger()
    backend = get_backend("faulty:aer?transient=0.5&seed=3", 16)
    caller = BackendCaller(
        backend, CallPolicy(retry=RetrySettings(max_attempts=10, backoff_initial_s=0.001)), ledger
    )
    for _ in range(6):
        caller.sample([bell()], 16, 1)
    assert ledger.attempts == 6 + ledger.failures and ledger.failures > 0
    assert ledger.last_job_id == ledger.job_ids[-1]


def test_budget_and_deadline_stop_attempts_before_they_start() -> None:
    backend = get_backend("aer", 16)
    broke = BackendCaller(backend, CallPolicy(budget_usd=0.0), Ledger())
    with pytest.raises(BudgetExhausted, match="budget spent"):
        broke.sample([bell()], 16, 1)
    late = BackendCaller(backend, CallPolicy(deadline_at=time.time() - 1), Ledger())
    with pytest.raises(DeadlineExceeded, match="deadline would be missed"):
        late.sample([bell()], 16, 1)


def test_aer_noisy_compiles_for_the_device_coupling_map_and_adds_noise() -> None:
    backend = get_backend("aer-noisy:fake_manila", 16)
    target = backend.target
    assert target.max_qubits == 5 and target.transpiler_target.num_qubits == 5
    coupling = {tuple(edge) for edge in target.transpiler_target.build_coupling_map().get_edges()}
    ring = QuantumCircuit(4)
    ring.h(range(4))
    for i in range(4):
        ring.cz(i, (i + 1) % 4)  # a ring does not fit manila's T-shaped coupling map
    ring.measure_all()
    compiled = target.pass_manager().run(ring)
    for instruction in compiled.data:
        if instruction.operation.num_qubits == 2:
            pair = tuple(compiled.find_bit(q).index for q in instruction.qubits)
            assert pair in coupling
    result = BackendCaller(backend).sample([compiled], 400, 3)
    assert result[0].data.meas.num_shots == 400


def test_ibm_adapter_runs_batch_mode_jobs_in_local_testing_mode() -> None:
    from qiskit_ibm_runtime import Batch

    backend = get_backend("ibm:fake_manila", 16)
    assert isinstance(backend.runner.batch, Batch) and backend.solver_path == "simulator"
    circuit = backend.target.pass_manager().run(bell())
    job = backend.runner.submit("sampler", [circuit], 100, 7)
    assert job.job_id()
    result = backend.runner.result(job, 60.0, 60.0)
    assert backend.runner.poll(job) is JobState.DONE and result[0].data.meas.num_shots == 100


def test_credentials_are_masked_and_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "s3cret-token")
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", "crn:v1:example")
    credentials = Credentials.load()
    assert credentials.token == "s3cret-token"
    assert "s3cret" not in repr(credentials) and "s3cret" not in str(credentials)
    monkeypatch.delenv("QISKIT_IBM_TOKEN")
    monkeypatch.delenv("QHOPPER_IBM_SECRET_BLOCK", raising=False)
    with pytest.raises(ConfigError, match="QISKIT_IBM_TOKEN"):
        Credentials.load()
