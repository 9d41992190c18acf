"""Provider limits (pipeline/backends/limits.py): declared per backend, overridden in
``qhopper.toml``, and every call cut into jobs within them and merged back
(pipeline/backends/jobs.py, pipeline/backends/calls.py).

Everything runs on real backends: Aer, Aer with fake_manila's noise, the fault-injecting
wrapper around Aer, and Aer's own runner watched by a subclass. The sampling circuits flip
qubit k by RX(pi) where bit k of an integer is set, so every binding has one certain outcome:
a merged result can be compared bit for bit, and a piece out of place shows.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerError
from typer.testing import CliRunner

from flows.cli import app
from pipeline.backends import BackendCaller, CallPolicy, Ledger, Workload, faulty, get_backend
from pipeline.backends.aer import AerRunner
from pipeline.backends.base import Backend, BackendJob, Primitive
from pipeline.backends.ibm import RuntimeCosts
from pipeline.backends.limits import (
    IBM_RUNTIME,
    LOCAL_SIMULATOR,
    ProviderLimits,
    jobs_needed,
)
from pipeline.config import BackendLimitSettings, PriceSettings, RetrySettings
from pipeline.config_sources import flatten, load_settings_with_sources
from pipeline.errors import PermanentBackendError

QUBITS = 5
SHOTS = (16, 32, 16)  # per PUB: the sampler groups PUBs by shots, the merge must not
FAST = RetrySettings(max_attempts=3, backoff_initial_s=0.001, backoff_max_s=0.005)


def limited(**limits: int) -> CallPolicy:
    return CallPolicy(retry=FAST, limit_overrides=BackendLimitSettings(**limits))


def flips() -> QuantumCircuit:
    x = ParameterVector("x", QUBITS)
    circuit = QuantumCircuit(QUBITS)
    for k in range(QUBITS):
        circuit.rx(x[k], k)
    circuit.measure_all()
    return circuit


def expected(pub: int, binding: int) -> int:
    """The outcome binding ``binding`` of PUB ``pub`` is certain to give."""
    return (7 * pub + 3 * binding + 1) % 2**QUBITS


def sampling_pubs(circuit: QuantumCircuit, bindings: int = 10) -> list[Any]:
    """Three PUBs of ``bindings`` bindings each, every binding its own certain outcome."""
    pubs = []
    for p, shots in enumerate(SHOTS):
        values = [
            [math.pi * ((expected(p, i) >> k) & 1) for k in range(QUBITS)] for i in range(bindings)
        ]
        pubs.append((circuit, np.array(values), shots))
    return pubs


class WatchedRunner(AerRunner):
    """Aer's own runner, watched: each job's PUBs, the most jobs submitted and not yet
    finished at once (a job finishes when its result is back), and the jobs cancelled.
    ``latency_s`` holds each job open that long, so jobs that may overlap do; submission
    number ``refuse`` (from 1) is refused as Aer refuses an invalid circuit."""

    def __init__(self, latency_s: float = 0.0, refuse: int = 0) -> None:
        super().__init__()
        self.latency_s = latency_s
        self.refuse = refuse
        self.lock = threading.Lock()
        self.submissions = 0
        self.jobs: list[list[Any]] = []
        self.unfinished = 0
        self.most_unfinished = 0
        self.cancelled: list[str] = []

    def submit(self, kind: Primitive, pubs: Sequence[Any], shots: int, seed: int) -> BackendJob:
        with self.lock:
            self.submissions += 1
            if self.submissions == self.refuse:
                raise AerError("invalid circuit")
        job = super().submit(kind, pubs, shots, seed)
        with self.lock:
            self.jobs.append(list(pubs))
            self.unfinished += 1
            self.most_unfinished = max(self.most_unfinished, self.unfinished)
        return job

    def cancel(self, job: BackendJob) -> None:
        self.cancelled.append(job.job_id())
        super().cancel(job)

    def result(self, job: BackendJob, submit_timeout_s: float, execute_timeout_s: float) -> Any:
        try:
            time.sleep(self.latency_s)
            return super().result(job, submit_timeout_s, execute_timeout_s)
        finally:
            with self.lock:
                self.unfinished -= 1

    def shapes(self) -> list[list[tuple[int, ...]]]:
        return [[SamplerPub.coerce(pub, 1).shape for pub in job] for job in self.jobs]


def watched(latency_s: float = 0.0, refuse: int = 0) -> tuple[Backend, WatchedRunner]:
    runner = WatchedRunner(latency_s, refuse)
    return dataclasses.replace(get_backend("aer", 16), runner=runner), runner


def assert_certain_outcomes(result: Any, bindings: int = 10) -> None:
    for p, shots in enumerate(SHOTS):
        bits = result[p].data.meas
        assert bits.shape == (bindings,) and bits.num_shots == shots
        for i in range(bindings):
            assert bits.get_int_counts(loc=i) == {expected(p, i): shots}, (p, i)


def test_backends_declare_their_providers_limits() -> None:
    assert get_backend("aer", 16).limits == LOCAL_SIMULATOR == ProviderLimits()
    assert LOCAL_SIMULATOR.jobs_in_flight == 1 and not LOCAL_SIMULATOR.bounded
    for stand_in in ("aer-noisy:fake_manila", "ibm:fake_manila"):  # they behave like the device
        assert get_backend(stand_in, 16).limits == IBM_RUNTIME
    assert IBM_RUNTIME.executions_per_job == 10_000_000 and IBM_RUNTIME.jobs_in_flight == 5
    assert get_backend("faulty:aer-noisy:fake_manila?latency=1ms", 16).limits == IBM_RUNTIME
    # A device's own qubits bound an ibm: target, not the simulators' cap; aer-noisy keeps its
    # density-matrix cap.
    assert get_backend("ibm:fake_manila", 3).target.max_qubits == 5
    assert get_backend("aer-noisy:fake_manila", 3).target.max_qubits == 3
    # Every declared limit can be overridden in qhopper.toml, and nothing else.
    declared = {f.name for f in dataclasses.fields(ProviderLimits)}
    assert set(BackendLimitSettings.model_fields) == declared


def test_a_sampler_call_cut_into_jobs_returns_what_one_call_returns() -> None:
    circuit = flips()
    whole = BackendCaller(get_backend("aer", 16)).sample(sampling_pubs(circuit), 8, seed=3)
    backend, runner = watched()
    ledger = Ledger()
    cut = BackendCaller(backend, limited(executables_per_job=7), ledger)
    result = cut.sample(sampling_pubs(circuit), 8, seed=3)
    # ceil(30 / 7) = 5 jobs, filled in PUB order: PUBs cut along their bindings, small
    # pieces sharing a job.
    assert runner.shapes() == [[(7,)], [(3,), (4,)], [(6,), (1,)], [(7,)], [(2,)]]
    assert ledger.jobs == ledger.attempts == len(set(ledger.job_ids)) == 5
    assert ledger.executions == 10 * sum(SHOTS)
    assert ledger.last_job_id == ledger.job_ids[-1]
    assert_certain_outcomes(result)
    for merged, one in zip(result, whole, strict=True):
        assert type(merged) is type(one) and merged.data.shape == one.data.shape
        assert np.array_equal(merged.data.meas.array, one.data.meas.array)  # bit for bit


@pytest.mark.parametrize(
    ("limits", "shapes"),
    [
        # executables x shots: 6 bindings of 16 shots, then 4 of 16 and 1 of 32, ...
        ({"executions_per_job": 100}, [[6], [4, 1], [3], [3], [3], [6], [4]]),
        # each PUB's circuit (11 instructions, ~1100 bytes) and 40 bytes a binding (5 values):
        # 4 bindings a job, and no room for a second circuit
        ({"payload_bytes": 1260}, [[4], [4], [2]] * 3),
    ],
)
def test_executions_and_payload_cut_jobs_too(
    limits: dict[str, int], shapes: list[list[int]]
) -> None:
    backend, runner = watched()
    result = BackendCaller(backend, limited(**limits)).sample(sampling_pubs(flips()), 8)
    assert runner.shapes() == [[(rows,) for rows in job] for job in shapes]
    assert_certain_outcomes(result)


def test_an_estimator_call_cut_into_jobs_gives_the_unsplit_expectations() -> None:
    theta = ParameterVector("t", 8)
    circuit = QuantumCircuit(4)
    for k in range(4):
        circuit.ry(theta[k], k)
    for k in range(3):
        circuit.cx(k, k + 1)
    for k in range(4):
        circuit.rz(theta[4 + k], k)
        circuit.rx(theta[k], k)
    rng = np.random.default_rng(11)

    def observable() -> SparsePauliOp:
        paulis = ["".join(rng.choice(list("IXYZ"), 4)) for _ in range(3)]
        return SparsePauliOp(paulis, rng.normal(size=3))

    pubs = [
        # observables and values both along the first axis: cut together
        (circuit, [observable() for _ in range(10)], rng.uniform(-3, 3, (10, 8))),
        # (4, 1) observables broadcast against (4, 3) bindings: rows of 3 executables
        (circuit, [[observable()] for _ in range(4)], rng.uniform(-3, 3, (4, 3, 8))),
        # one observable broadcast over every binding: never cut, kept whole in each piece
        (circuit, observable(), rng.uniform(-3, 3, (10, 8))),
    ]
    whole = BackendCaller(get_backend("aer", 16)).estimate(pubs, seed=5)
    ledger = Ledger()
    cut = BackendCaller(get_backend("aer", 16), limited(executables_per_job=7), ledger)
    result = cut.estimate(pubs, seed=5)
    assert ledger.jobs == 5 and ledger.executions == 0  # 32 executables; an estimator: no shots
    assert len(result) == len(whole) == 3
    for merged, one in zip(result, whole, strict=True):
        assert merged.data.evs.shape == one.data.evs.shape == merged.data.shape
        np.testing.assert_allclose(merged.data.evs, one.data.evs, rtol=0, atol=1e-9)
        np.testing.assert_allclose(merged.data.stds, one.data.stds, rtol=0, atol=1e-9)
    assert np.ptp(result[0].data.evs) > 0.1  # the values differ row to row: an order shows


def test_a_noisy_device_stand_in_cuts_its_calls_and_keeps_each_outcome_in_place() -> None:
    backend = get_backend("aer-noisy:fake_manila", 16)
    circuit = backend.target.pass_manager().run(flips())
    ledger = Ledger()
    result = BackendCaller(backend, limited(executables_per_job=7), ledger).sample(
        sampling_pubs(circuit), 8, seed=2
    )
    assert ledger.jobs == 5
    # Readout and gate noise: each binding's certain outcome is still by far the commonest.
    for p, shots in enumerate(SHOTS):
        bits = result[p].data.meas
        assert bits.shape == (10,) and bits.num_shots == shots
        for i in range(10):
            counts = bits.get_int_counts(loc=i)
            assert max(counts, key=counts.__getitem__) == expected(p, i), (p, i, counts)


@pytest.mark.parametrize("in_flight", [1, 2])
def test_a_failed_job_is_retried_alone_and_the_order_is_kept(in_flight: int) -> None:
    # A fresh fake provider (its own fault draws): at transient=0.2 and seed 54 the second
    # submission fails after running (500), then every draw passes: one job fails, once.
    backend = faulty.make("aer?transient=0.2&seed=54", 16, lambda inner: get_backend(inner, 16))
    ledger = Ledger()
    policy = limited(executables_per_job=7, jobs_in_flight=in_flight)
    result = BackendCaller(backend, policy, ledger).sample(sampling_pubs(flips()), 8, seed=4)
    assert ledger.failures == 1 and ledger.errors[0].startswith("TransientBackendError")
    assert ledger.attempts == 5 + 1  # the five jobs, and the failed one again: not the call
    assert ledger.jobs == len(ledger.job_ids) == len(set(ledger.job_ids)) == 6
    assert ledger.max_attempts_per_call == 2
    assert_certain_outcomes(result)


def test_no_more_jobs_in_flight_than_the_limit() -> None:
    backend, runner = watched(latency_s=0.05)
    ledger = Ledger()
    policy = limited(executables_per_job=7, jobs_in_flight=2)
    result = BackendCaller(backend, policy, ledger).sample(sampling_pubs(flips()), 8, seed=1)
    assert ledger.jobs == len(runner.jobs) == 5
    assert runner.most_unfinished == 2  # side by side, and never more
    assert_certain_outcomes(result)


def test_a_failed_job_stops_its_call_and_cancels_what_is_in_flight() -> None:
    backend, runner = watched(latency_s=0.2, refuse=2)
    ledger = Ledger()
    policy = limited(executables_per_job=7, jobs_in_flight=2)
    with pytest.raises(PermanentBackendError, match="invalid circuit"):
        BackendCaller(backend, policy, ledger).sample(sampling_pubs(flips()), 8)
    [first] = ledger.job_ids
    assert len(runner.jobs) == 1 and runner.cancelled == [first]  # nothing more started
    assert (ledger.attempts, ledger.failures, ledger.jobs) == (2, 1, 1)
    assert runner.unfinished == 0  # the call raised once every job had ended


def test_a_call_that_fits_one_job_is_submitted_as_given() -> None:
    backend, runner = watched()
    pubs = sampling_pubs(flips())
    ledger = Ledger()
    result = BackendCaller(backend, limited(executions_per_job=10**6), ledger).sample(pubs, 8)
    assert len(runner.jobs) == 1 and all(
        sent is given for sent, given in zip(runner.jobs[0], pubs, strict=True)
    )  # the PUBs themselves, uncut and uncoerced
    assert (ledger.jobs, ledger.attempts, ledger.executions) == (1, 1, 10 * sum(SHOTS))
    assert_certain_outcomes(result)


def test_what_no_cut_can_fit_is_refused_before_anything_is_submitted() -> None:
    backend, runner = watched()
    circuit = flips()
    ledger = Ledger()
    rows = [(circuit, np.zeros((2, 8, QUBITS)), 16)]  # a row of 8 executables
    with pytest.raises(PermanentBackendError, match="PUB 0 cannot be cut to fit one job"):
        BackendCaller(backend, limited(executables_per_job=7), ledger).sample(rows, 8)
    with pytest.raises(PermanentBackendError, match=r"asks 16 shots an executable; .* at most 8"):
        BackendCaller(backend, limited(shots_per_executable=8), ledger).sample(rows, 8)
    assert runner.jobs == [] and ledger.attempts == 0


def test_limits_in_qhopper_toml_reach_the_caller(tmp_path: Path) -> None:
    config = tmp_path / "qhopper.toml"
    config.write_text("[backends.aer]\nexecutables_per_job = 7\njobs_in_flight = 2\n")
    loaded = load_settings_with_sources(tmp_path / "home", config)  # as the CLI loads them
    settings = loaded.settings
    shown = flatten(settings)  # what `qhopper config` lists: the limits the table sets
    assert shown["backends.aer.executables_per_job"] == 7 and "backends.aer" not in shown
    assert loaded.sources["backends.aer.executables_per_job"].startswith(f"file {config}")
    policy = CallPolicy.from_settings(settings, budget_usd=1.0)
    ledger = Ledger()
    caller = BackendCaller(get_backend(settings.quantum.backend, 16), policy, ledger)
    assert caller.limits == ProviderLimits(executables_per_job=7, jobs_in_flight=2)
    assert_certain_outcomes(caller.sample(sampling_pubs(flips()), 8))
    assert ledger.jobs == 5
    other = CallPolicy.from_settings(settings, backend="aer-noisy:fake_manila")
    assert other.limit_overrides == BackendLimitSettings()  # another backend keeps its own


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ("[backends.aer]\nexecutable_per_job = 7\n", "backends.aer.executable_per_job"),
        ("[backends.ibm]\njobs_in_flight = 0\n", "backends.ibm.jobs_in_flight"),
        ("[backends.aer-noisey]\njobs_in_flight = 2\n", "no backend named 'aer-noisey'"),
    ],
)
def test_a_bad_limits_table_is_refused_naming_what_is_wrong(
    tmp_path: Path, table: str, named: str
) -> None:
    config = tmp_path / "qhopper.toml"
    config.write_text(table)
    result = CliRunner().invoke(app, ["config", "--config", str(config), "--home", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines


def test_estimates_price_the_jobs_the_limits_imply() -> None:
    assert jobs_needed(ProviderLimits(executables_per_job=7), 30) == 5
    assert jobs_needed(IBM_RUNTIME, 30, shots=1_000_000) == 3  # 10 million executions a job
    assert jobs_needed(IBM_RUNTIME, 10**6) == 1  # an estimator's: no shots, no executions cap
    assert jobs_needed(LOCAL_SIMULATOR, 10**9, shots=10**6) == 1
    # 2 chunks of 10 problems at 1M shots each: 21 estimator calls and 2 sampling calls, each
    # of which IBM cuts in two (10 problems x 1M shots = 10M executions: 2 jobs of 5).
    work = Workload(20, 5, 30, 23, 20 * 64, 20 * 1_000_001, chunk_problems=10)
    assert work.jobs(LOCAL_SIMULATOR) == 23 and work.jobs(IBM_RUNTIME) == 21 + 2 * 2
    target = get_backend("ibm:fake_manila", 16).target
    prices = PriceSettings()
    qpu = RuntimeCosts(target, local=False, limits=IBM_RUNTIME).estimate(work, prices, 2**30)
    uncut = RuntimeCosts(target, local=False, limits=LOCAL_SIMULATOR).estimate(work, prices, 2**30)
    assert qpu.execute_s - uncut.execute_s == pytest.approx(2 * prices.qpu_seconds_per_job)
