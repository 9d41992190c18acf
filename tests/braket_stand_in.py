"""A stand-in for Amazon Braket's HTTP API on loopback, for the ``braket:<ARN>`` tests.

Amazon Braket cannot be reached from where the tests run, so only the network layer is
replaced: the real Braket SDK (``AwsDevice``, ``AwsQuantumTask``, ``AwsSession``) and
botocore (its SigV4 request signing, its restJson serialising and error parsing) talk HTTP
to :class:`BraketServiceStandIn`, pointed there by botocore's service-specific endpoint
variable ``AWS_ENDPOINT_URL_BRAKET``; S3 and STS (the SDK's default bucket, its account id,
the results it downloads) are moto's server, through ``AWS_ENDPOINT_URL_S3`` and
``AWS_ENDPOINT_URL_STS``. Every program set a task carries is run for real by Braket's own
local state-vector simulator (the ``braket_sv`` that ``LocalSimulator("braket_sv")`` loads),
and its result JSON is written to the S3 key the SDK reads, as the service does.

The stand-in answers the four operations the SDK uses for a task (botocore's Braket service
model, ``braket/2019-09-01``): GetDevice ``GET /device/{deviceArn}``, CreateQuantumTask
``POST /quantum-task``, GetQuantumTask ``GET /quantum-task/{arn}`` (QUEUED on the first
look, COMPLETED after) and CancelQuantumTask ``PUT /quantum-task/{arn}/cancel``. It records
every request, and can be told to refuse the next CreateQuantumTask calls with an AWS
error, or to answer late.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
GARNET = "arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet"
ACCESS_KEY_ID = "AKIASTANDIN0000TEST"
SECRET_ACCESS_KEY = "stand-in-secret-9f2c7a1e5b3d4c6e8a0b"  # never to be seen outside botocore
TIMEOUT_S = 5.0  # every socket read and every wait for a thread, here and in the handler

# AWS errors by code: (HTTP status, message), as Braket's API answers them.
ERRORS = {
    "ThrottlingException": (429, "Rate exceeded"),
    "ServiceUnavailableException": (503, "Service unavailable, please retry"),
    "ValidationException": (400, "Invalid action: the program set was refused"),
    "AccessDeniedException": (403, "User is not authorized to perform: braket:CreateQuantumTask"),
    "ResourceNotFoundException": (404, "Resource not found"),
    "ConflictException": (409, "Quantum task is already in a terminal state"),
    "InternalServiceException": (500, "The stand-in failed"),
}
_CREDENTIAL_SCOPE = re.compile(
    r"Credential=([^/,\s]+)/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request"
)


@dataclass(frozen=True)
class Request:
    """One request as the stand-in received it."""

    method: str
    path: str  # URL-decoded, without the query
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def operation(self) -> str:
        return _operation(self.method, self.path)

    @property
    def json(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body or b"{}")
        return loaded

    @property
    def credential_scope(self) -> tuple[str, str, str] | None:
        """(access key id, region, service) of the SigV4 Authorization header, if signed."""
        found = _CREDENTIAL_SCOPE.search(self.headers.get("Authorization", ""))
        return (found[1], found[2], found[3]) if found else None


def _operation(method: str, path: str) -> str:
    if method == "GET" and path.startswith("/device/"):
        return "GetDevice"
    if method == "POST" and path == "/quantum-task":
        return "CreateQuantumTask"
    if method == "PUT" and path.startswith("/quantum-task/") and path.endswith("/cancel"):
        return "CancelQuantumTask"
    if method == "GET" and path.startswith("/quantum-task/"):
        return "GetQuantumTask"
    return "Unknown"


@dataclass
class _Task:
    arn: str
    device_arn: str
    shots: int
    bucket: str
    directory: str
    created_at: str
    executables: int
    programs: int
    looks: int = 0
    status: str = "QUEUED"


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def aws_error(code: str, message: str | None = None) -> Answer:
    """An AWS error as botocore's restJson parser reads it: the code in ``x-amzn-ErrorType``
    (and the body's ``__type``), the message in the body."""
    status, default = ERRORS[code]
    return Answer(
        status,
        {"__type": code, "message": message or default},
        {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.braket/"},
    )


# -- devices ------------------------------------------------------------------------------------
def sv1_device() -> dict[str, Any]:
    """GetDevice's answer for SV1: the local state-vector simulator's own capabilities (its
    program-set limits: 100 executables, 200,000 shots), at SV1's 34 qubits, polled fast."""
    from braket.devices import LocalSimulator

    capabilities = json.loads(LocalSimulator("braket_sv").properties.json())
    capabilities["paradigm"]["qubitCount"] = 34
    capabilities["service"]["getTaskPollIntervalMillis"] = 5
    return _device(SV1, "SV1", "Amazon Braket", "SIMULATOR", capabilities)


def garnet_device() -> dict[str, Any]:
    """GetDevice's answer for IQM Garnet: an ``IqmDeviceCapabilities`` document (20 qubits
    on a line, the simulator's OpenQASM and program-set actions); its tasks still run on the
    local state-vector simulator, noise-free."""
    from braket.devices import LocalSimulator

    simulator = json.loads(LocalSimulator("braket_sv").properties.json())
    capabilities = {
        "braketSchemaHeader": {
            "name": "braket.device_schema.iqm.iqm_device_capabilities",
            "version": "1",
        },
        "service": {**simulator["service"], "getTaskPollIntervalMillis": 5},
        "action": {k: v for k, v in simulator["action"].items() if "openqasm" in k},
        "deviceParameters": {},
        "paradigm": {
            "braketSchemaHeader": {
                "name": "braket.device_schema.gate_model_qpu_paradigm_properties",
                "version": "1",
            },
            "qubitCount": 20,
            "nativeGateSet": ["cz", "prx"],
            "connectivity": {
                "fullyConnected": False,
                "connectivityGraph": {str(q): [str(q + 1)] for q in range(19)},
            },
        },
    }
    return _device(GARNET, "Garnet", "IQM", "QPU", capabilities)


def _device(arn: str, name: str, provider: str, kind: str, caps: dict[str, Any]) -> dict[str, Any]:
    return {
        "deviceArn": arn,
        "deviceName": name,
        "providerName": provider,
        "deviceType": kind,
        "deviceStatus": "ONLINE",
        "deviceCapabilities": json.dumps(caps),  # a JsonValue: a string holding JSON
        "deviceQueueInfo": [],
    }


# -- the service --------------------------------------------------------------------------------
class BraketServiceStandIn:
    """Amazon Braket's API on a loopback port (see the module's docstring): only the network
    layer is replaced; the SDK, botocore's request signing and parsing, and Braket's local
    simulator are real. ``requests`` records every request; :meth:`refuse_next` and
    ``latency_s`` shape the answers."""

    def __init__(self, s3_endpoint: str) -> None:
        self.s3_endpoint = s3_endpoint
        self.devices = {SV1: sv1_device(), GARNET: garnet_device()}
        self.requests: list[Request] = []
        self.latency_s = 0.0
        self._refusals: list[str] = []
        self._tasks: dict[str, _Task] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def refuse_next(self, count: int, code: str) -> None:
        """Answer the next ``count`` CreateQuantumTask requests with the AWS error ``code``."""
        with self._lock:
            self._refusals.extend([code] * count)

    def recorded(self, operation: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.operation == operation]

    # -- lifetime ----------------------------------------------------------------------------
    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"service": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="braket-stand-in",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(TIMEOUT_S)

    # -- the operations ----------------------------------------------------------------------
    def answer(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
        if self.latency_s:
            threading.Event().wait(self.latency_s)
        if request.credential_scope is None:
            return Answer(
                403,
                {"message": "Missing Authentication Token"},
                {"x-amzn-ErrorType": "MissingAuthenticationTokenException"},
            )
        operation = request.operation
        if operation == "GetDevice":
            return self.get_device(request.path.removeprefix("/device/"))
        if operation == "CreateQuantumTask":
            return self.create_quantum_task(request)
        arn = request.path.removeprefix("/quantum-task/").removesuffix("/cancel")
        if arn not in self._tasks:
            return aws_error("ResourceNotFoundException", f"Quantum task {arn} not found")
        if operation == "CancelQuantumTask":
            return self.cancel_quantum_task(self._tasks[arn])
        return self.get_quantum_task(self._tasks[arn])

    def get_device(self, arn: str) -> Answer:
        if arn not in self.devices:
            return aws_error("ResourceNotFoundException", f"Device {arn} not found")
        return Answer(200, self.devices[arn])

    def create_quantum_task(self, request: Request) -> Answer:
        with self._lock:
            refusal = self._refusals.pop(0) if self._refusals else None
        if refusal is not None:
            return aws_error(refusal)
        body = request.json
        if body.get("deviceArn") not in self.devices:
            return aws_error("ValidationException", f"unknown device {body.get('deviceArn')}")
        scope = request.credential_scope
        assert scope is not None
        try:
            task = self._run(body, region=scope[1])
        except ValueError as exc:  # the simulator's (or the program set's) refusal
            return aws_error("ValidationException", str(exc))
        with self._lock:
            self._tasks[task.arn] = task
        return Answer(201, {"quantumTaskArn": task.arn})

    def get_quantum_task(self, task: _Task) -> Answer:
        with self._lock:
            task.looks += 1
            if task.status == "QUEUED" and task.looks > 1:
                task.status = "COMPLETED"
        return Answer(200, _task_description(task))

    def cancel_quantum_task(self, task: _Task) -> Answer:
        with self._lock:
            if task.status in ("COMPLETED", "CANCELLED"):
                return aws_error("ConflictException")
            task.status = "CANCELLED"
        return Answer(200, {"quantumTaskArn": task.arn, "cancellationStatus": "CANCELLED"})

    def _run(self, body: dict[str, Any], region: str) -> _Task:
        """Run the action's program set on Braket's local state-vector simulator and write
        its result where the SDK reads it: ``<bucket>/<prefix>/<task id>/results.json``."""
        from braket.default_simulator import StateVectorSimulator
        from braket.ir.openqasm import ProgramSet

        action = ProgramSet.parse_raw(body["action"])
        result = StateVectorSimulator().run(action, shots=int(body["shots"]))
        task_id = str(uuid.uuid4())
        directory = f"{body['outputS3KeyPrefix']}/{task_id}"
        self._s3().put_object(
            Bucket=body["outputS3Bucket"], Key=f"{directory}/results.json", Body=result.json()
        )
        return _Task(
            arn=f"arn:aws:braket:{region}:123456789012:quantum-task/{task_id}",
            device_arn=body["deviceArn"],
            shots=int(body["shots"]),
            bucket=body["outputS3Bucket"],
            directory=directory,
            created_at=datetime.now(UTC).isoformat(),
            executables=action.num_executables,
            programs=len(action.programs),
        )

    def _s3(self) -> Any:
        """moto's S3, reached with the stand-in's own dummy credentials (not the caller's)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="stand-in",
            aws_secret_access_key="stand-in",
        )


def _task_description(task: _Task) -> dict[str, Any]:
    """GetQuantumTask's answer, every field its model requires."""
    return {
        "quantumTaskArn": task.arn,
        "status": task.status,
        "deviceArn": task.device_arn,
        "deviceParameters": "{}",
        "shots": task.shots,
        "outputS3Bucket": task.bucket,
        "outputS3Directory": task.directory,
        "createdAt": task.created_at,
        "queueInfo": {"queue": "QUANTUM_TASKS_QUEUE", "position": "1", "queuePriority": "Normal"},
        "actionMetadata": {
            "actionType": "braket.ir.openqasm.program_set",
            "programCount": task.programs,
            "executableCount": task.executables,
        },
    }


class _Handler(BaseHTTPRequestHandler):
    service: BraketServiceStandIn
    timeout = TIMEOUT_S  # a request that stalls ends its own connection, not the server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            self.command,
            unquote(split.path),
            split.query,
            dict(self.headers.items()),
            self.rfile.read(length),
        )
        try:
            answer = self.service.answer(request)
        except Exception as exc:  # the stand-in's own fault: an answer, not a dropped socket
            answer = aws_error("InternalServiceException", f"stand-in: {exc!r}")
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        for name, value in {
            "Content-Type": "application/json",
            "Content-Length": str(len(payload)),
            "x-amzn-RequestId": str(uuid.uuid4()),
            **answer.headers,
        }.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read ``requests``, not stderr."""


# -- the environment ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BraketEnvironment:
    """The stand-in, moto's endpoint and the temporary home the SDK ran in."""

    braket: BraketServiceStandIn
    s3_endpoint: str
    home: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's threaded server on a free loopback port (S3 and STS), as tests/s3_stand_in.py."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


# Everything of the AWS chain this process could otherwise pick up from the machine.
_CLEARED = (
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "BRAKET_ENDPOINT",
    "AMZN_BRAKET_OUT_S3_BUCKET",
    "AMZN_BRAKET_TASK_RESULTS_S3_URI",
    "AMZN_BRAKET_JOB_TOKEN",
)


@contextmanager
def braket_stand_in(
    s3_endpoint: str, home: Path, credentials: bool = True
) -> Iterator[BraketEnvironment]:
    """The stand-in running and the environment pointing the SDK at it, for as long as it is
    held: endpoints, dummy credentials (none if ``credentials`` is false), a temporary home
    with empty AWS config files, and no instance metadata lookups (no network beyond
    loopback)."""
    service = BraketServiceStandIn(s3_endpoint)
    service.start()
    config, shared = home / ".aws" / "config", home / ".aws" / "credentials"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("")
    shared.write_text("")
    variables = {
        "HOME": str(home),
        "AWS_ENDPOINT_URL_BRAKET": service.url,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_ENDPOINT_URL_STS": s3_endpoint,
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(shared),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if credentials:
        variables |= {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        }
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name in (*_CLEARED, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                patch.delenv(name, raising=False)
            for name, value in variables.items():
                patch.setenv(name, value)
            yield BraketEnvironment(service, s3_endpoint, home)
    finally:
        service.stop()
