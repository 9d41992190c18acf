"""A fault-injecting provider around any backend: ``faulty:aer?transient=0.3&latency=2s``.

It is a fake, and says so in its name, but behaves like a remote provider: jobs wait in
a queue, take time to run, fail now and then, and the service has outages. Options
(durations as ``250ms``, ``2s``, ``1m`` or plain seconds):

==============  =====================================================================
``transient``   probability that an attempt fails transiently: half of them at
                submission (429 rate limited, 503, connection reset), half after
                running (500 internal error, billed for the time it ran)
``permanent``   probability that a job fails permanently (400 invalid circuit)
``latency``     how long each job runs before its result is there
``queue``       how long each job waits in the queue before it runs
``outage``      fraction of every ``period`` during which the service is down
                (``outage=1``: down all the time); every client sees the same windows
``period``      the outage cycle, default 60s
``seed``        seeds the fault draws (default 0), so a test sees the same faults
==============  =====================================================================

Faults are raised as a provider's own exceptions (:class:`ProviderHTTPError` with a
status code, ``ConnectionResetError``); this module's error table maps them. The wrapper
keeps the inner backend's target (same templates) and job limits but never claims its
capabilities: a fake provider's calls must go through its jobs, not the engine's exact
simulator.
This module imports no qiskit, so the CLI can check a spec's options in milliseconds.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from pipeline.backends.base import (
    Backend,
    BackendJob,
    Capabilities,
    CostModel,
    ErrorRule,
    Estimate,
    JobRunner,
    Primitive,
    Workload,
)
from pipeline.backends.limits import ProviderLimits
from pipeline.durations import parse_duration
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.config import PriceSettings

_UNITS = ("ms", "s", "m", "h")


class ProviderHTTPError(Exception):
    """What a provider's client raises for an HTTP error status."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code


@dataclass(frozen=True)
class Faults:
    transient: float = 0.0
    permanent: float = 0.0
    latency: float = 0.0
    queue: float = 0.0
    outage: float = 0.0
    period: float = 60.0
    seed: int = 0

    @classmethod
    def parse(cls, query: str) -> Faults:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError as exc:
            raise ConfigError(f"faulty: malformed options {query!r}: {exc}") from exc
        for key, raw in pairs:
            if key not in known:
                raise ConfigError(
                    f"faulty: unknown option {key!r}; known: {', '.join(sorted(known))}"
                )
            try:
                values[key] = (
                    int(raw)
                    if key == "seed"
                    else parse_duration(raw, _UNITS, signed=True)
                    if key in ("latency", "queue", "period")
                    else float(raw)
                )
            except ValueError as exc:
                raise ConfigError(f"faulty: {key}={raw!r} is not a number or duration") from exc
        faults = cls(**values)
        for name in ("transient", "permanent", "outage"):
            if not 0.0 <= getattr(faults, name) <= 1.0:
                raise ConfigError(f"faulty: {name} must be between 0 and 1")
        if min(faults.latency, faults.queue) < 0 or faults.period <= 0:
            raise ConfigError("faulty: durations must not be negative, period must be positive")
        return faults

    def down(self, now: float) -> bool:
        return self.outage >= 1.0 or (now % self.period) < self.outage * self.period


def parse_argument(argument: str) -> tuple[str, Faults]:
    """``inner?options`` as the inner spec and the faults; raises ConfigError if malformed."""
    inner, _, query = argument.rpartition("?") if "?" in argument else (argument, "", "")
    if not inner:
        raise ConfigError("faulty needs an inner backend: faulty:aer?transient=0.3")
    return inner, Faults.parse(query)


class FaultyJob:
    """A job on the fake provider: queued, then running, then done or failed."""

    def __init__(
        self, inner: BackendJob, queued_until: float, done_at: float, failure: Exception | None
    ) -> None:
        self.inner = inner
        self._id = f"faulty-{secrets.token_hex(6)}"
        self.queued_until = queued_until
        self.done_at = done_at
        self.failure = failure
        self.cancelled = False

    def job_id(self) -> str:
        return self._id

    def status(self) -> str:
        now = time.monotonic()
        if self.cancelled:
            return "CANCELLED"
        if now < self.queued_until:
            return "QUEUED"
        if now < self.done_at:
            return "RUNNING"
        return "ERROR" if self.failure else "DONE"

    def result(self) -> Any:
        time.sleep(max(0.0, self.done_at - time.monotonic()))  # a real job's result() blocks too
        if self.cancelled:
            raise ProviderHTTPError(409, f"job {self._id} was cancelled")
        if self.failure:
            raise self.failure
        return self.inner.result()

    def cancel(self) -> None:
        self.cancelled = True
        self.inner.cancel()


class FaultyRunner(JobRunner):
    """The inner runner's jobs behind a fake provider: latency, queueing, outages, errors."""

    def __init__(self, inner: JobRunner, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults
        self._rng = random.Random(faults.seed)

    def submit(self, kind: Primitive, pubs: Sequence[Any], shots: int, seed: int) -> BackendJob:
        faults, draw = self.faults, self._rng.random()
        if faults.down(time.time()):
            raise ProviderHTTPError(503, "service unavailable: the provider is in an outage")
        if draw < faults.transient / 2:
            raise [
                ProviderHTTPError(429, "rate limited: too many requests"),
                ProviderHTTPError(503, "service unavailable: backend is being calibrated"),
                ConnectionResetError("connection reset by peer"),
            ][int(draw * 1e6) % 3]
        failure: Exception | None = None
        if draw < faults.transient:
            failure = ProviderHTTPError(500, "internal error while running the job")
        elif draw < faults.transient + faults.permanent:
            failure = ProviderHTTPError(400, "invalid circuit: instruction not supported by target")
        inner = self.inner.submit(kind, pubs, shots, seed)
        now = time.monotonic()
        return FaultyJob(inner, now + faults.queue, now + faults.queue + faults.latency, failure)


class FaultyCosts(CostModel):
    """The inner model, times the expected attempts per job, plus queueing and latency per job."""

    def __init__(self, inner: CostModel, faults: Faults, limits: ProviderLimits) -> None:
        self.inner = inner
        self.faults = faults
        self.limits = limits

    def estimate(self, work: Workload, prices: PriceSettings, memory_limit: int) -> Estimate:
        inner = self.inner.estimate(work, prices, memory_limit)
        retries = 1.0 / max(1e-9, 1.0 - self.faults.transient)  # expected attempts per job
        jobs = work.jobs(self.limits)
        return Estimate(
            inner.cost_usd * retries,
            jobs * self.faults.queue * retries,
            (inner.execute_s + jobs * self.faults.latency) * retries,
            inner.memory_bytes,
            inner.reason,
        )

    def bill(self, job: BackendJob, run_s: float, shots: int, prices: PriceSettings) -> float:
        queued = self.faults.queue if isinstance(job, FaultyJob) else 0.0
        return self.inner.bill(job, max(0.0, run_s - queued), shots, prices)


def make(argument: str, max_qubits: int, resolve: Callable[[str], Backend]) -> Backend:
    """The fake provider around ``resolve(inner spec)``: its target, its own jobs and errors."""
    inner_spec, faults = parse_argument(argument)
    inner = resolve(inner_spec)
    return Backend(
        name=f"faulty:{argument}",
        solver_path=inner.solver_path,
        target=inner.target,
        runner=FaultyRunner(inner.runner, faults),
        costs=FaultyCosts(inner.costs, faults, inner.limits),
        errors=inner.errors.extended(ErrorRule.http(ProviderHTTPError)),
        capabilities=Capabilities(exact_statevector=False, local=False),
        limits=inner.limits,
    )
