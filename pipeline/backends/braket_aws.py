"""Amazon Braket in the cloud: ``braket:<device ARN>``, a Braket QPU or managed simulator
through ``AwsDevice``.

Credentials come from boto3's usual chain (environment, profile, role) and stay inside
boto3's session: qhopper never reads, logs or writes them. The region comes from the ARN (a
global simulator's from the chain's default, else us-east-1). Calls go out as program sets
within the device's own limits, like ``braket-local``'s (:mod:`pipeline.backends.braket`);
Braket compiles the circuits to a QPU's native gates. Packing problems side by side on a
Braket QPU would need its topology and calibration (``device.properties``): not done yet, so
a QPU batch runs unpacked, each optimiser step a task, and the router prices it so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.backends.base import Backend, BackendJob, Capabilities, CostModel, Estimate, Workload
from pipeline.backends.braket import (
    ERRORS,
    ESTIMATOR_SHOTS,
    BraketRunner,
    BraketTarget,
    program_set_limits,
)
from pipeline.backends.limits import ProviderLimits
from pipeline.backends.registry import BRAKET_ARN
from pipeline.config import PriceSettings
from pipeline.errors import ConfigError
from pipeline.vocabulary import SolverPath

log = logging.getLogger("qhopper.backends.braket")

# Amazon Braket's published prices (https://aws.amazon.com/braket/pricing/): every QPU task
# USD 0.30, and a price per shot by QPU family, "not affected by the number or type of gates".
QPU_TASK_USD = 0.30
QPU_SHOT_USD = {
    "ionq/forte": 0.08,
    "ionq/aria": 0.03,
    "iqm/garnet": 0.00145,
    "rigetti/ankaa": 0.0009,
}
# Managed simulators are billed by the minute of simulation (same page): SV1 and DM1 USD 0.075,
# TN1 USD 0.275, with a minimum of 3 seconds a task.
SIMULATOR_MINUTE_USD = {"sv1": 0.075, "dm1": 0.075, "tn1": 0.275}
SIMULATOR_MINIMUM_S = 3.0

AWS_BASIS = ("h", "x", "rx", "ry", "rz", "cx")  # CNOT, not ZZ: every gate-based QPU takes it


class AwsCosts(CostModel):
    """Braket's published prices: per task and per shot on a QPU, per minute on a managed
    simulator. Every job is one task (a program set), estimator calls included."""

    def __init__(self, provider: str, device: str, limits: ProviderLimits) -> None:
        self.provider = provider
        self.device = device.lower()
        self.limits = limits

    @property
    def simulator_minute_usd(self) -> float | None:
        return SIMULATOR_MINUTE_USD.get(self.device) if self.provider == "amazon" else None

    @property
    def shot_usd(self) -> float:
        family = f"{self.provider.lower()}/{re.split(r'[-_]', self.device)[0]}"
        if family not in QPU_SHOT_USD:
            raise ConfigError(
                f"no published Braket shot price for {family}; known: {', '.join(sorted(QPU_SHOT_USD))}"
            )
        return QPU_SHOT_USD[family]

    def estimate(self, work: Workload, prices: PriceSettings, memory_limit: int) -> Estimate:
        tasks = work.jobs(self.limits)
        shots = work.evaluations * ESTIMATOR_SHOTS + work.shots
        minute = self.simulator_minute_usd
        if minute is not None:  # ~1 ms a shot at 10-20 qubits on SV1, 3 s at least a task
            execute_s = max(tasks * SIMULATOR_MINIMUM_S, shots * 1e-3)
            return Estimate(execute_s / 60 * minute, 0.0, execute_s, 0)
        execute_s = tasks * 2.0 + shots * 1e-3
        return Estimate(tasks * QPU_TASK_USD + shots * self.shot_usd, 0.0, execute_s, 0)

    def bill(self, job: BackendJob, run_s: float, shots: int, prices: PriceSettings) -> float:
        minute = self.simulator_minute_usd
        if minute is not None:
            return max(run_s, SIMULATOR_MINIMUM_S) / 60 * minute
        executed = getattr(job, "shots", shots)
        return QPU_TASK_USD + executed * self.shot_usd


def parse_arn(arn: str) -> re.Match[str]:
    found = BRAKET_ARN.fullmatch(arn)
    if found is None:
        raise ConfigError(
            f"braket needs a device ARN such as arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet,"
            f" not {arn!r}"
        )
    return found


def aws_device(arn: str) -> Any:
    """``AwsDevice`` in the ARN's region; boto3 finds the credentials (never qhopper)."""
    import boto3
    from botocore.config import Config
    from braket.aws import AwsDevice, AwsSession

    region = parse_arn(arn)["region"] or boto3.Session().region_name or "us-east-1"
    log.info("connecting to Amazon Braket device %s in %s", arn, region)
    # One HTTP attempt a request: qhopper retries each job under its own policy
    # (pipeline.backends.calls); botocore's legacy retries (5 attempts, sleeping seconds)
    # would multiply that bound, hide throttling from it and sleep past its deadline.
    once = Config(retries={"total_max_attempts": 1})
    session = AwsSession(boto_session=boto3.Session(region_name=region), config=once)
    return AwsDevice(arn, aws_session=session)


# Braket's default quota: "Rate of CreateQuantumTask requests: 20 per second" and at most 60
# concurrent SV1/DM1 tasks a region (docs.aws.amazon.com/braket/latest/developerguide/
# braket-quotas.html); QPU tasks queue on the device, so a few at once keep it fed.
AWS_TASKS_IN_FLIGHT = 5


def make(argument: str, max_qubits: int, resolve: Callable[[str], Backend]) -> Backend:
    found = parse_arn(argument)
    name = f"braket:{argument}"
    try:
        device = aws_device(argument)
    except (BotoCoreError, ClientError, ValueError) as exc:  # no credentials, refused, not found
        raise ERRORS.translate(exc) from exc
    qpu = found["type"] == "qpu"
    limits = program_set_limits(device, jobs_in_flight=AWS_TASKS_IN_FLIGHT)
    qubits = int(getattr(device.properties.paradigm, "qubitCount", max_qubits))
    return Backend(
        name=name,
        solver_path=SolverPath.QPU if qpu else SolverPath.SIMULATOR,
        target=BraketTarget(name, min(qubits, max_qubits) if not qpu else qubits, AWS_BASIS),
        runner=BraketRunner(lambda: device, local=False),
        costs=AwsCosts(found["provider"], found["device"], limits),
        errors=ERRORS,
        capabilities=Capabilities(exact_statevector=False, local=False),
        limits=limits,
    )
