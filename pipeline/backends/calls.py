"""How one backend call is made: timeouts, bounded retries, budget, deadline, breaker, ledger.

Retries live here, around each primitive call, and not around a whole chunk: a chunk's
lockstep optimisation makes tens of calls (grid, refinement steps, sampling), so
retrying the chunk would repeat and re-bill every call already done, and at a 30 %
transient rate a 20-call chunk would almost never get through (0.7**20 < 0.1 %).
Retrying the failed call alone wastes one call at most and keeps the bound per call.

:class:`BackendCaller` is the only way the engine reaches a backend: ``estimate(pubs)``
and ``sample(pubs, shots)`` each make one call through the backend's job runner under a
:class:`CallPolicy`, record every attempt (job id, outcome, cost) in a :class:`Ledger`
that travels back to the flow with the chunk's answers, and are the one boundary where
the provider's exceptions become :mod:`pipeline.errors` (the backend's error table).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from pipeline.backends.base import Backend, Primitive
from pipeline.config import PriceSettings, RetrySettings, Settings, TimeoutSettings
from pipeline.errors import (
    BackendUnavailable,
    BudgetExhausted,
    DeadlineExceeded,
    TransientBackendError,
)

log = logging.getLogger("qhopper.backends")


@dataclass(frozen=True)
class CallPolicy:
    """Limits for the calls of one chunk: the settings' retries, timeouts and prices (their
    defaults unless given), this chunk's deadline and budget. Plain data, so it travels to
    Dask workers; the defaults live in the settings alone."""

    retry: RetrySettings = field(default_factory=RetrySettings)
    timeouts: TimeoutSettings = field(default_factory=TimeoutSettings)
    prices: PriceSettings = field(default_factory=PriceSettings)
    deadline_at: float | None = None  # epoch seconds; no attempt starts that cannot end by then
    budget_usd: float = math.inf  # what this chunk may spend, failed attempts included

    @classmethod
    def from_settings(
        cls, settings: Settings, deadline_at: float | None = None, budget_usd: float = math.inf
    ) -> CallPolicy:
        return cls(settings.retry, settings.timeouts, settings.prices, deadline_at, budget_usd)


@dataclass
class Ledger:
    """Every attempt of a chunk: how many, which failed, the provider's job ids, the cost."""

    attempts: int = 0
    failures: int = 0
    max_attempts_per_call: int = 0
    cost_usd: float = 0.0
    job_ids: list[str] = field(default_factory=list)
    last_job_id: str | None = None  # the job whose result the answers come from
    errors: list[str] = field(default_factory=list)


@dataclass
class _Breaker:
    exhausted: int = 0  # consecutive calls that ran out of retries
    open_until: float = 0.0


# A worker process remembers a backend whose calls keep exhausting their retries, and skips
# it for a while instead of spending every chunk's retries on an outage. One exhausted call
# does not open it: at a 30 % transient rate one call in ~120 exhausts 4 attempts.
_BREAKERS: dict[str, _Breaker] = {}


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

    def estimate(self, pubs: Sequence[Any], seed: int = 0) -> Any:
        """One EstimatorV2 call: expectation values of every PUB."""
        return self.call(Primitive.ESTIMATOR, pubs, 0, seed)

    def sample(self, pubs: Sequence[Any], shots: int, seed: int = 0) -> Any:
        """One SamplerV2 call (``shots`` is the default for PUBs that name none)."""
        return self.call(Primitive.SAMPLER, pubs, shots, seed)

    def call(self, kind: Primitive, pubs: Sequence[Any], shots: int, seed: int) -> Any:
        """One primitive call, retried on transient errors within the policy's bounds."""
        policy, retry = self.policy, self.policy.retry
        breaker = _BREAKERS.setdefault(self.name, _Breaker())
        if time.time() < breaker.open_until:
            raise BackendUnavailable(
                f"{self.name} is down: circuit open for {breaker.open_until - time.time():.0f}s "
                f"more after {retry.breaker_threshold} calls in a row exhausted their retries"
            )
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            self.check_budget_and_deadline()
            attempts += 1
            self.ledger.attempts += 1
            self.ledger.max_attempts_per_call = max(self.ledger.max_attempts_per_call, attempts)
            return self._attempt(kind, pubs, shots, seed)

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
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            result = retrying(attempt)
        except TransientBackendError as exc:
            if attempts < retry.max_attempts:  # stopped early: the next try would end too late
                raise DeadlineExceeded(
                    f"deadline would be missed: stopped after {attempts} attempts; last error: {exc}"
                ) from exc
            breaker.exhausted += 1
            if breaker.exhausted >= retry.breaker_threshold:
                breaker.exhausted, breaker.open_until = 0, time.time() + retry.breaker_cooldown_s
            kind_of = (
                BackendUnavailable if isinstance(exc, BackendUnavailable) else TransientBackendError
            )
            what = "backend down" if kind_of is BackendUnavailable else "retries exhausted"
            raise kind_of(f"{what}: {attempts} attempts on one call; last error: {exc}") from exc
        breaker.exhausted = 0
        return result

    def _attempt(self, kind: Primitive, pubs: Sequence[Any], shots: int, seed: int) -> Any:
        """Submit and wait once; the provider's exceptions leave here as pipeline.errors."""
        backend, policy, ledger = self.backend, self.policy, self.ledger
        total_shots = shots * len(pubs)
        started = time.perf_counter()
        job = None
        try:
            job = backend.runner.submit(kind, pubs, shots, seed)
            ledger.job_ids.append(job.job_id())
            result = backend.runner.result(job, policy.timeouts.submit_s, policy.timeouts.execute_s)
        except Exception as exc:
            error = backend.errors.translate(exc)
            ledger.failures += 1
            ledger.errors.append(f"{type(error).__name__}: {error}"[:300])
            if job is not None:
                ledger.cost_usd += backend.costs.bill(
                    job, time.perf_counter() - started, total_shots, policy.prices
                )
            if error is exc:
                raise
            raise error from exc
        ledger.cost_usd += backend.costs.bill(
            job, time.perf_counter() - started, total_shots, policy.prices
        )
        ledger.last_job_id = job.job_id()
        return result

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


class _StopAtDeadline(stop_base):
    """Stop retrying when the backoff before the next attempt would end past the deadline."""

    def __init__(self, deadline_at: float | None) -> None:
        self.deadline_at = deadline_at

    def __call__(self, state: RetryCallState) -> bool:
        if self.deadline_at is None:
            return False
        return time.time() + (state.upcoming_sleep or 0.0) >= self.deadline_at
