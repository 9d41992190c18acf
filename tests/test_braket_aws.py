"""``braket:<device ARN>`` (pipeline/backends/braket_aws.py) against a stand-in for Amazon
Braket's HTTP API (tests/braket_stand_in.py).

Amazon Braket cannot be reached from this machine, so every test here runs against
:class:`BraketServiceStandIn`: only the network layer is replaced, at the boundary the SDK
exposes (botocore's endpoint, ``AWS_ENDPOINT_URL_BRAKET``; S3 and STS on moto's server).
The Braket SDK, botocore's SigV4 signing, serialising and error parsing, and the simulation
(Braket's own local state-vector simulator, run by the stand-in on the very program set the
SDK sent) are real. What the tests check is what qhopper controls: the requests it makes
(one program set per job, within the device's limits, to the ARN's region), the credentials
it leaves to boto3's chain, and how Braket's errors become qhopper's.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError
from braket_stand_in import (
    ACCESS_KEY_ID,
    GARNET,
    SECRET_ACCESS_KEY,
    SV1,
    BraketEnvironment,
    braket_stand_in,
    moto_server,
)
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.quantum_info import Statevector

from pipeline.backends import calls
from pipeline.backends.base import Backend, Primitive
from pipeline.backends.braket import BraketRunner
from pipeline.backends.braket_aws import (
    QPU_SHOT_USD,
    QPU_TASK_USD,
    SIMULATOR_MINIMUM_S,
    SIMULATOR_MINUTE_USD,
)
from pipeline.backends.calls import BackendCaller, CallPolicy
from pipeline.backends.registry import get_backend
from pipeline.config import PriceSettings, RetrySettings, TimeoutSettings
from pipeline.errors import BackendUnavailable, PermanentBackendError, TransientBackendError

QUBITS = 3
SHOTS = 2000
# Sampled against exact: P(TV >= t) <= 2**K * exp(-2 * shots * t**2) for K outcomes (the
# L1 deviation bound of Weissman et al. 2003): 2**8 * exp(-25.6) ~ 2e-9 at 2,000 shots.
TV_BOUND = 0.08
FAST = CallPolicy(
    retry=RetrySettings(max_attempts=3, backoff_initial_s=0.001, backoff_max_s=0.005),
    timeouts=TimeoutSettings(submit_s=10.0, execute_s=10.0),  # a stuck task fails its test
)


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """moto's S3 and STS on loopback: the SDK's default bucket, account id and results."""
    with moto_server() as endpoint:
        yield endpoint


def _forget_backends() -> None:
    """get_backend keeps one backend per spec and process, bound to the endpoint it was
    built against; a worker's breaker remembers a backend's exhausted calls."""
    get_backend.cache_clear()
    for name in [name for name in calls._BREAKERS if name.startswith("braket:")]:
        del calls._BREAKERS[name]


@pytest.fixture
def aws(moto: str, tmp_path: Path) -> Iterator[BraketEnvironment]:
    """The Braket stand-in with dummy credentials in the environment, for one test."""
    _forget_backends()
    try:
        with braket_stand_in(moto, tmp_path / "home") as environment:
            yield environment
    finally:
        _forget_backends()


@pytest.fixture
def no_aws_credentials(moto: str, tmp_path: Path) -> Iterator[BraketEnvironment]:
    """The stand-in with no credentials anywhere in the chain: no AWS_* variables, empty
    config and credentials files, no instance metadata."""
    _forget_backends()
    try:
        with braket_stand_in(moto, tmp_path / "home", credentials=False) as environment:
            yield environment
    finally:
        _forget_backends()


# -- circuits ---------------------------------------------------------------------------------
def ansatz() -> QuantumCircuit:
    """Three qubits entangled at parameterised angles: outcomes neither certain nor uniform."""
    x = ParameterVector("x", QUBITS)
    circuit = QuantumCircuit(QUBITS)
    for k in range(QUBITS):
        circuit.ry(x[k], k)
    circuit.cx(0, 1)
    circuit.cx(1, 2)
    circuit.rx(x[0] / 2, 2)
    circuit.measure_all()
    return circuit


def flips() -> QuantumCircuit:
    """RX(x[k]) on qubit k: at angles 0 or pi every outcome is certain."""
    x = ParameterVector("x", QUBITS)
    circuit = QuantumCircuit(QUBITS)
    for k in range(QUBITS):
        circuit.rx(x[k], k)
    circuit.measure_all()
    return circuit


def flip_angles(count: int) -> np.ndarray:
    """Parameter set i flips the qubits of the bits of i (mod 2**QUBITS)."""
    return np.array([[math.pi * ((i >> k) & 1) for k in range(QUBITS)] for i in range(count)])


def compiled(backend: Backend, circuit: QuantumCircuit) -> QuantumCircuit:
    """The circuit as the engine sends it: compiled for the backend's own target."""
    out: QuantumCircuit = backend.target.pass_manager().run(circuit)
    return out


def total_variation(counts: dict[str, int], circuit: QuantumCircuit, values: Any) -> float:
    """Distance of sampled counts from the exact distribution of the unbound circuit."""
    bound = circuit.remove_final_measurements(inplace=False).assign_parameters(values)
    exact = Statevector(bound).probabilities_dict()
    shots = sum(counts.values())
    outcomes = set(exact) | set(counts)
    return 0.5 * sum(abs(counts.get(o, 0) / shots - exact.get(o, 0.0)) for o in outcomes)


def one_shot_circuit(backend: Backend) -> list[Any]:
    """A PUB of the smallest call: H on one qubit, no parameters."""
    circuit = QuantumCircuit(1)
    circuit.h(0)
    circuit.measure_all()
    return [(compiled(backend, circuit), None, 10)]


# -- request shaping --------------------------------------------------------------------------
def test_a_sampler_call_is_one_program_set_task_with_the_values_as_input_sets(
    aws: BraketEnvironment,
) -> None:
    """Against the stand-in: one CreateQuantumTask for the call, to SV1, signed for us-east-1
    (a global simulator with no region in the chain), whose action is an OpenQASM program
    set carrying the parameter values as input sets and executables x shots shots; what comes
    back matches the exact distribution of every parameter set."""
    backend = get_backend(f"braket:{SV1}", 16)
    values = np.array([[0.3, 1.1, 2.0], [1.0, 0.2, 0.5], [2.5, 0.7, 1.4], [0.0, 3.0, 0.9]])
    caller = BackendCaller(backend, FAST)
    result = caller.sample([(compiled(backend, ansatz()), values, SHOTS)], SHOTS)

    (create,) = aws.braket.recorded("CreateQuantumTask")
    body = create.json
    action = json.loads(body["action"])
    assert body["deviceArn"] == SV1
    assert action["braketSchemaHeader"]["name"] == "braket.ir.openqasm.program_set"
    (program,) = action["programs"]
    inputs = program["inputs"]
    assert len(inputs) == QUBITS
    assert np.allclose([inputs[f"p{k}"] for k in range(QUBITS)], values.T)
    assert body["shots"] == len(values) * SHOTS
    assert {r.credential_scope for r in aws.braket.requests} == {
        (ACCESS_KEY_ID, "us-east-1", "braket")
    }
    assert caller.ledger.jobs == 1 and caller.ledger.executions == len(values) * SHOTS
    bits = result[0].data.meas
    assert bits.shape == (len(values),) and bits.num_shots == SHOTS
    for i, row in enumerate(values):
        assert total_variation(bits.get_counts(loc=i), ansatz(), row) < TV_BOUND, i


def test_a_global_simulator_takes_the_chains_default_region(
    aws: BraketEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the stand-in: SV1's ARN names no region, so the chain's default region
    (AWS_DEFAULT_REGION) signs every request."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    backend = get_backend(f"braket:{SV1}", 16)
    BackendCaller(backend, FAST).sample(one_shot_circuit(backend), 10)

    assert {r.credential_scope for r in aws.braket.requests} == {
        (ACCESS_KEY_ID, "eu-west-2", "braket")
    }
    (create,) = aws.braket.recorded("CreateQuantumTask")
    assert create.json["outputS3Bucket"] == "amazon-braket-eu-west-2-123456789012"


def test_a_qpu_arn_is_reached_in_its_own_region(
    aws: BraketEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the stand-in (IQM Garnet's capabilities; its tasks simulated noise-free): the
    ARN's region, not the chain's default, signs every request; the backend is a QPU with the
    device's 20 qubits, and its results are right."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    backend = get_backend(f"braket:{GARNET}", 16)
    values = np.array([[0.4, 1.3, 2.2]])
    caller = BackendCaller(backend, FAST)
    result = caller.sample([(compiled(backend, ansatz()), values, SHOTS)], SHOTS)

    assert str(backend.solver_path) == "qpu" and backend.target.max_qubits == 20
    assert [r.operation for r in aws.braket.requests][:2] == ["GetDevice", "CreateQuantumTask"]
    assert {r.credential_scope for r in aws.braket.requests} == {
        (ACCESS_KEY_ID, "eu-north-1", "braket")
    }
    assert aws.braket.recorded("CreateQuantumTask")[0].json["deviceArn"] == GARNET
    counts = result[0].data.meas.get_counts(loc=0)
    assert total_variation(counts, ansatz(), values[0]) < TV_BOUND


def test_a_call_past_the_devices_100_executables_is_cut_into_tasks(aws: BraketEnvironment) -> None:
    """Against the stand-in: 201 parameter sets at SV1's 100 executables a program set make
    three CreateQuantumTask requests of at most 100 executables each, and the merged result
    keeps every parameter set's certain outcome in its place."""
    backend = get_backend(f"braket:{SV1}", 16)
    assert backend.limits.executables_per_job == 100  # read from GetDevice's capabilities
    values = flip_angles(201)
    caller = BackendCaller(backend, FAST)
    result = caller.sample([(compiled(backend, flips()), values, 10)], 10)

    creates = aws.braket.recorded("CreateQuantumTask")
    sizes = sorted(
        len(json.loads(r.json["action"])["programs"][0]["inputs"]["p0"]) for r in creates
    )
    assert sizes == [1, 100, 100]
    assert sorted(r.json["shots"] for r in creates) == [10, 1000, 1000]
    assert caller.ledger.jobs == 3
    bits = result[0].data.meas
    assert bits.shape == (201,)
    for i in range(201):
        assert bits.get_int_counts(loc=i) == {i % 2**QUBITS: 10}, i


# -- credentials ------------------------------------------------------------------------------
def test_requests_are_signed_with_the_chains_key_and_the_secret_goes_nowhere(
    aws: BraketEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    """Against the stand-in: every request carries a SigV4 signature naming the access key
    id from the environment; the secret key is in no request, no log line (every logger at
    DEBUG, botocore's included), not in the backend's repr or str, the ledger, or any file
    under the home the SDK ran in."""
    caplog.set_level(logging.DEBUG)
    backend = get_backend(f"braket:{SV1}", 16)
    caller = BackendCaller(backend, FAST)
    caller.sample(one_shot_circuit(backend), 10)

    assert aws.braket.requests
    for request in aws.braket.requests:
        assert request.headers["Authorization"].startswith(
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/"
        )
        seen = json.dumps(request.headers) + request.body.decode() + request.path + request.query
        assert SECRET_ACCESS_KEY not in seen
    assert any(record.name.startswith("qhopper") for record in caplog.records)
    assert SECRET_ACCESS_KEY not in caplog.text
    assert isinstance(backend.runner, BraketRunner)
    device = backend.runner.device
    for shown in (repr(backend), str(backend), repr(device), repr(caller.ledger)):
        assert SECRET_ACCESS_KEY not in shown
    for path in aws.home.rglob("*"):
        assert not path.is_file() or SECRET_ACCESS_KEY.encode() not in path.read_bytes(), path


def test_without_credentials_the_backend_fails_permanently_at_once(
    no_aws_credentials: BraketEnvironment,
) -> None:
    """Against the stand-in, with nothing in the chain: building the backend fails as a
    PermanentBackendError (never retried) naming the missing credentials, within seconds,
    and not one request reaches Braket."""
    started = time.monotonic()
    with pytest.raises(PermanentBackendError, match="NoCredentialsError") as raised:
        get_backend(f"braket:{SV1}", 16)
    assert not isinstance(raised.value, TransientBackendError)
    assert time.monotonic() - started < 5.0
    assert no_aws_credentials.braket.requests == []


# -- errors -----------------------------------------------------------------------------------
ERROR_KINDS = [
    ("ThrottlingException", 429, TransientBackendError),
    ("ServiceUnavailableException", 503, BackendUnavailable),
    ("ValidationException", 400, PermanentBackendError),
    ("AccessDeniedException", 403, PermanentBackendError),
]


@pytest.mark.parametrize(("code", "status", "kind"), ERROR_KINDS)
def test_braket_errors_are_translated_by_their_code(
    aws: BraketEnvironment, code: str, status: int, kind: type[Exception]
) -> None:
    """Against the stand-in: the ClientError botocore raises for the stand-in's answer (the
    SDK's own, untouched) becomes qhopper's error by its code: throttling transient, service
    unavailable the provider down (transient), validation and access denied permanent."""
    backend = get_backend(f"braket:{SV1}", 16)
    aws.braket.refuse_next(1, code)
    with pytest.raises(ClientError) as raised:
        backend.runner.submit(Primitive.SAMPLER, one_shot_circuit(backend), 10, 0)

    response = raised.value.response
    assert response["Error"]["Code"] == code
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert type(backend.errors.translate(raised.value)) is kind


@pytest.mark.parametrize("code", ["ThrottlingException", "ServiceUnavailableException"])
def test_throttling_and_unavailability_are_retried_by_the_call_policy(
    aws: BraketEnvironment, code: str
) -> None:
    """Against the stand-in: a call whose first two CreateQuantumTask requests are refused
    transiently succeeds on the third; exactly three requests, each one attempt of the call
    policy (botocore retries nothing behind it)."""
    backend = get_backend(f"braket:{SV1}", 16)
    aws.braket.refuse_next(2, code)
    caller = BackendCaller(backend, FAST)
    result = caller.sample(one_shot_circuit(backend), 10)

    assert len(aws.braket.recorded("CreateQuantumTask")) == 3
    assert (caller.ledger.attempts, caller.ledger.failures, caller.ledger.jobs) == (3, 2, 1)
    assert result[0].data.meas.num_shots == 10


def test_a_qpu_outside_the_chains_region_keeps_the_call_policys_retries(
    aws: BraketEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the stand-in: the session is opened in the ARN's region, not copied there by
    the SDK (its copy drops qhopper's botocore config), so a throttled CreateQuantumTask on
    Garnet is still one attempt of the call policy: two requests, two attempts."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    backend = get_backend(f"braket:{GARNET}", 16)
    aws.braket.refuse_next(1, "ThrottlingException")
    caller = BackendCaller(backend, FAST)
    caller.sample(one_shot_circuit(backend), 10)

    assert len(aws.braket.recorded("CreateQuantumTask")) == 2
    assert caller.ledger.attempts == 2


@pytest.mark.parametrize(("code", "kind"), [(c, k) for c, _, k in ERROR_KINDS[:2]])
def test_transient_refusals_stop_at_the_policys_attempts(
    aws: BraketEnvironment, code: str, kind: type[Exception]
) -> None:
    """Against the stand-in: a service that keeps refusing gets max_attempts requests in
    all (3), not a retry storm, and the call ends transient."""
    backend = get_backend(f"braket:{SV1}", 16)
    aws.braket.refuse_next(10, code)
    with pytest.raises(kind, match="3 attempts"):
        BackendCaller(backend, FAST).sample(one_shot_circuit(backend), 10)
    assert len(aws.braket.recorded("CreateQuantumTask")) == 3


@pytest.mark.parametrize("code", ["ValidationException", "AccessDeniedException"])
def test_validation_and_access_denied_are_permanent_and_not_retried(
    aws: BraketEnvironment, code: str
) -> None:
    """Against the stand-in: a refused request is made exactly once and the call fails as a
    PermanentBackendError naming Braket's code."""
    backend = get_backend(f"braket:{SV1}", 16)
    aws.braket.refuse_next(1, code)
    caller = BackendCaller(backend, FAST)
    with pytest.raises(PermanentBackendError, match=code):
        caller.sample(one_shot_circuit(backend), 10)
    assert len(aws.braket.recorded("CreateQuantumTask")) == 1
    assert caller.ledger.attempts == 1


# -- costs ------------------------------------------------------------------------------------
def test_a_managed_simulator_bills_by_the_minute_with_a_3_second_minimum(
    aws: BraketEnvironment,
) -> None:
    """Against the stand-in: a task on SV1 that took under 3 s costs 3 s at SV1's price a
    minute; a longer one its time."""
    backend = get_backend(f"braket:{SV1}", 16)
    caller = BackendCaller(backend, FAST)
    caller.sample(one_shot_circuit(backend), 10)

    minute = SIMULATOR_MINUTE_USD["sv1"]
    assert caller.ledger.cost_usd == pytest.approx(SIMULATOR_MINIMUM_S / 60 * minute)
    job: Any = object()
    assert backend.costs.bill(job, 120.0, 10, PriceSettings()) == pytest.approx(2 * minute)


def test_a_qpu_bills_per_task_and_per_shot(aws: BraketEnvironment) -> None:
    """Against the stand-in: a task on IQM Garnet costs the task price plus the shots it ran
    (executables x shots) at Garnet's price a shot."""
    backend = get_backend(f"braket:{GARNET}", 16)
    caller = BackendCaller(backend, FAST)
    pubs = [(compiled(backend, flips()), flip_angles(4), 25)]
    caller.sample(pubs, 25)

    assert caller.ledger.cost_usd == pytest.approx(
        QPU_TASK_USD + 4 * 25 * QPU_SHOT_USD["iqm/garnet"]
    )
