"""How one backend call is made: jobs within the limits, timeouts, bounded retries, budget,
deadline, breaker, ledger.

Retries live here, around each provider job, and not around a whole chunk: a chunk's
lockstep optimisation makes tens of calls (grid, refinement steps, sampling), so
retrying the chunk would repeat and re-bill every call already done, and at a 30 %
transient rate a 20-call chunk would almost never get through (0.7**20 < 0.1 %).
Retrying the failed job alone wastes one job at most and keeps the bound per job.

:class:`BackendCaller` is the only way the engine reaches a backend: ``estimate(pubs)``
and ``sample(pubs, shots)`` each make one call through the backend's job runner under a
:class:`CallPolicy`. A call that does not fit one job under the backend's limits (with the
policy's overrides) is cut into jobs (:mod:`pipeline.backends.jobs`), at most
``jobs_in_flight`` of them submitted and unfinished at once, each retried alone, and their
results merged into exactly what one call returns. Every attempt (job id, outcome, cost)
is recorded in a :class:`Ledger` that travels back to the flow with the chunk's answers;
this is the one boundary where the provider's exceptions become :mod:`pipeline.errors`
(the backend's error table).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from pipeline.backends.base import Backend, BackendJob, JobRunner, Primitive
from pipeline.backends.limits import ProviderLimits, executions_in
from pipeline.backends.registry import backend_family
from pipeline.config import (
    BackendLimitSettings,
    PriceSettings,
    RetrySettings,
    Settings,
    TimeoutSettings,
)
from pipeline.errors import (
    BackendUnavailable,
    BudgetExhausted,
    DeadlineExceeded,
    TransientBackendError,
)

if TYPE_CHECKING:
    from pipeline.backends.jobs import PlannedJob

log = logging.getLogger("qhopper.backends")


@dataclass(frozen=True)
class CallPolicy:
    """Limits for the calls of one chunk: the settings' retries, timeouts and prices (their
    defaults unless given), this chunk's deadline and budget, and the ``[backends.<name>]``
    overrides of the backend's job limits. Plain data, so it travels to Dask workers; the
    defaults live in the settings alone."""

    retry: RetrySettings = field(default_factory=RetrySettings)
    timeouts: TimeoutSettings = field(default_factory=TimeoutSettings)
    prices: PriceSettings = field(default_factory=PriceSettings)
    deadline_at: float | None = None  # epoch seconds; no attempt starts that cannot end by then
    budget_usd: float = math.inf  # what this chunk may spend, failed attempts included
    limit_overrides: BackendLimitSettings = field(default_factory=BackendLimitSettings)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        deadline_at: float | None = None,
        budget_usd: float = math.inf,
        backend: str | None = None,
    ) -> CallPolicy:
        """The settings' policy for calls to ``backend`` (a spec; default the run's
        ``quantum.backend``), whose family's ``[backends.<family>]`` table overrides its limits."""
        family = backend_family(backend or settings.quantum.backend)
        overrides = settings.backends.get(family, BackendLimitSettings())
        return cls(
            settings.retry, settings.timeouts, settings.prices, deadline_at, budget_usd, overrides
        )


@dataclass
class Ledger:
    """Every attempt of a chunk: how many, which failed, the provider's job ids, the cost.

    ``attempts`` counts job submissions, ``jobs`` the provider jobs they made (one per job
    id; a submission refused outright makes none), ``max_attempts_per_call`` the most
    attempts one job took (the bound retries keep), ``executions`` the executables x shots
    of the jobs that succeeded (an estimator's none: it names no shots)."""

    attempts: int = 0
    failures: int = 0
    max_attempts_per_call: int = 0
    cost_usd: float = 0.0
    jobs: int = 0
    executions: int = 0
    job_ids: list[str] = field(default_factory=list)
    last_job_id: str | None = None  # the job whose result the answers come from (the last one)
    errors: list[str] = field(default_factory=list)


@dataclass
class _Breaker:
    exhausted: int = 0  # consecutive calls that ran out of retries
    open_until: float = 0.0


# A worker process remembers a backend whose calls keep exhausting their retries, and skips
# it for a while instead of spending every chunk's retries on an outage. One exhausted call
# does not open it: at a 30 % transient rate one call in ~120 exhausts 4 attempts.
_BREAKERS: dict[str, _Breaker] = {}


class _Abandoned(Exception):
    """A sibling job of the call failed: this one makes no further attempt."""


class _Flight:
    """The jobs of one call: the lock their ledger entries take, the provider jobs submitted
    and unfinished (cancelled when one fails: a call that has failed should run up no more
    bills), and the stop a failure sets."""

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.unfinished: set[BackendJob] = set()

    def sleep(self, seconds: float) -> None:
        """A retry's backoff, cut short when the call has failed."""
        self.stopped.wait(seconds)

    def check(self) -> None:
        if self.stopped.is_set():
            raise _Abandoned

    def track(self, job: BackendJob) -> None:
        """``job`` is submitted; cancelled at once if the call has failed meanwhile."""
        with self.lock:
            self.unfinished.add(job)
        if self.stopped.is_set():
            self.runner.cancel(job)

    def stop(self) -> None:
        self.stopped.set()
        with self.lock:
            unfinished = list(self.unfinished)
        for job in unfinished:
            self.runner.cancel(job)


class BackendCaller:
    """``backend`` as one chunk sees it: every call bounded, retried, recorded and mapped."""

    def __init__(
        self,
        backend: Backend,
        policy: CallPolicy | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.policy = policy or CallPolicy()
        self.ledger = ledger or Ledger()
        self.limits: ProviderLimits = backend.limits.overridden(self.policy.limit_overrides.given())

    def estimate(self, pubs: Sequence[Any], seed: int = 0) -> Any:
        """One EstimatorV2 call: expectation values of every PUB."""
        return self.call(Primitive.ESTIMATOR, pubs, 0, seed)

    def sample(self, pubs: Sequence[Any], shots: int, seed: int = 0) -> Any:
        """One SamplerV2 call (``shots`` is the default for PUBs that name none)."""
        return self.call(Primitive.SAMPLER, pubs, shots, seed)

    def call(self, kind: Primitive, pubs: Sequence[Any], shots: int, seed: int) -> Any:
        """One primitive call: cut into jobs within the limits, each retried on transient
        errors within the policy's bounds, their results merged into one."""
        from pipeline.backends import jobs  # qiskit loads with the first call, not the package

        retry = self.policy.retry
        breaker = _BREAKERS.setdefault(self.name, _Breaker())
        if time.time() < breaker.open_until:
            raise BackendUnavailable(
                f"{self.name} is down: circuit open for {breaker.open_until - time.time():.0f}s "
                f"more after {retry.breaker_threshold} calls in a row exhausted their retries"
            )
        planned = jobs.cut(kind, pubs, shots, seed, self.limits)
        try:
            results = self._run_all(kind, planned, shots)
        except TransientBackendError:  # a job ran out of retries
            breaker.exhausted += 1
            if breaker.exhausted >= retry.breaker_threshold:
                breaker.exhausted, breaker.open_until = 0, time.time() + retry.breaker_cooldown_s
            raise
        breaker.exhausted = 0
        self.ledger.last_job_id = results[-1][1]
        return jobs.merge(planned, [result for result, _ in results])

    def _run_all(
        self, kind: Primitive, planned: Sequence[PlannedJob], shots: int
    ) -> list[tuple[Any, str]]:
        """Every job's result and job id, in order; at most ``jobs_in_flight`` at once.

        A job that fails stops the call at once: the jobs not started never start, those in
        flight are cancelled, and the call raises the first failure, in the call's order,
        once every job has ended (so the ledger is complete)."""
        flight = _Flight(self.backend.runner)

        def run(job: PlannedJob) -> tuple[Any, str]:
            try:
                return self._run_job(kind, job, shots, flight)
            except _Abandoned:
                raise
            except BaseException:
                flight.stop()
                raise

        width = min(self.limits.jobs_in_flight, len(planned))
        if width == 1:
            return [run(job) for job in planned]
        with ThreadPoolExecutor(width, thread_name_prefix=f"{self.name}-jobs") as pool:
            futures = [pool.submit(run, job) for job in planned]
            wait(futures, return_when=FIRST_EXCEPTION)
            if flight.stopped.is_set():
                for future in futures:
                    future.cancel()
                wait(futures)
                raise _first_failure(futures)
            return [future.result() for future in futures]

    def _run_job(
        self, kind: Primitive, job: PlannedJob, shots: int, flight: _Flight
    ) -> tuple[Any, str]:
        """One job, retried alone on transient errors within the policy's bounds."""
        policy, retry = self.policy, self.policy.retry
        attempts = 0

        def attempt() -> tuple[Any, str]:
            nonlocal attempts
            flight.check()
            self.check_budget_and_deadline()
            attempts += 1
            with flight.lock:
                self.ledger.attempts += 1
                self.ledger.max_attempts_per_call = max(self.ledger.max_attempts_per_call, attempts)
            return self._attempt(kind, job, shots, flight)

        retrying = Retrying(
            retry=retry_if_exception_type(TransientBackendError),
            stop=stop_any(
                stop_after_attempt(retry.max_attempts), _StopAtDeadline(policy.deadline_at)
            ),
            wait=wait_exponential_jitter(
                initial=retry.backoff_initial_s,
                max=retry.backoff_max_s,
                jitter=retry.backoff_initial_s,
            ),
            sleep=flight.sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except TransientBackendError as exc:
            if attempts < retry.max_attempts:  # stopped early: the next try would end too late
                raise DeadlineExceeded(
                    f"deadline would be missed: stopped after {attempts} attempts; last error: {exc}"
                ) from exc
            kind_of = (
                BackendUnavailable if isinstance(exc, BackendUnavailable) else TransientBackendError
            )
            what = "backend down" if kind_of is BackendUnavailable else "retries exhausted"
            where = f" (its job {job.index + 1} of {job.of})" if job.of > 1 else ""
            raise kind_of(
                f"{what}: {attempts} attempts on one call{where}; last error: {exc}"
            ) from exc

    def _attempt(
        self, kind: Primitive, planned: PlannedJob, shots: int, flight: _Flight
    ) -> tuple[Any, str]:
        """Submit and wait once; the provider's exceptions leave here as pipeline.errors."""
        backend, policy, ledger = self.backend, self.policy, self.ledger
        total_shots = shots * len(planned.pubs)
        started = time.perf_counter()
        job = None
        try:
            job = backend.runner.submit(kind, planned.pubs, shots, planned.seed)
            with flight.lock:
                ledger.jobs += 1
                ledger.job_ids.append(job.job_id())
            flight.track(job)
            result = backend.runner.result(job, policy.timeouts.submit_s, policy.timeouts.execute_s)
        except Exception as exc:
            error = backend.errors.translate(exc)
            with flight.lock:
                ledger.failures += 1
                ledger.errors.append(f"{type(error).__name__}: {error}"[:300])
                if job is not None:
                    flight.unfinished.discard(job)
                    ledger.cost_usd += backend.costs.bill(
                        job, time.perf_counter() - started, total_shots, policy.prices
                    )
            if error is exc:
                raise
            raise error from exc
        with flight.lock:
            flight.unfinished.discard(job)
            ledger.cost_usd += backend.costs.bill(
                job, time.perf_counter() - started, total_shots, policy.prices
            )
            ledger.executions += executions_in(result)
        return result, job.job_id()

    def check_budget_and_deadline(self) -> None:
        """Raise when the next attempt would overspend the budget or miss the deadline."""
        policy = self.policy
        if self.ledger.cost_usd >= policy.budget_usd:
            raise BudgetExhausted(
                f"budget spent: {self.ledger.cost_usd:.6f} USD of the {policy.budget_usd:.6f} "
                "allotted to this chunk"
            )
        if policy.deadline_at is not None and time.time() >= policy.deadline_at:
            raise DeadlineExceeded("deadline would be missed: no time left for another attempt")

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s attempt %d failed (%s); retrying in %.2fs",
            self.name,
            state.attempt_number,
            error,
            state.upcoming_sleep,
        )


def _first_failure(futures: Sequence[Future[tuple[Any, str]]]) -> BaseException:
    """The first job's own error, in the call's order (not a sibling's abandoning)."""
    errors = [
        error
        for future in futures
        if not future.cancelled()
        and (error := future.exception()) is not None
        and not isinstance(error, _Abandoned)
    ]
    return errors[0]


class _StopAtDeadline(stop_base):
    """Stop retrying when the backoff before the next attempt would end past the deadline."""

    def __init__(self, deadline_at: float | None) -> None:
        self.deadline_at = deadline_at

    def __call__(self, state: RetryCallState) -> bool:
        if self.deadline_at is None:
            return False
        return time.time() + (state.upcoming_sleep or 0.0) >= self.deadline_at
