"""Why an answer did not come from its planned route: a stable code and a sentence.

Codes are for machines (the report groups by them, and they are stored as plain strings);
messages are for people. Every code is defined here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FallbackCode(StrEnum):
    """Why a problem's answer is not its planned route's."""

    QUBIT_LIMIT = "qubit_limit"  # the problem is larger than the backend takes
    ROUTE_DEADLINE = "route_deadline"  # quantum could not finish before the deadline
    ROUTE_BUDGET = "route_budget"  # quantum would cost more than the budget allows
    ROUTE_QUOTA = "route_quota"  # the tenant's quota is spent
    BACKEND_UNFIT = "backend_unfit"  # the backend cannot take the batch (memory, device size)
    NO_FEASIBLE_SAMPLE = "no_feasible_sample"  # every shot broke a hard constraint
    EXECUTION_ERROR = "execution_error"  # a task raised (a lost worker, out of memory, a bug)
    ATTEMPT_LIMIT = "attempt_limit"  # claimed too many times without finishing
    NON_FINITE_OBJECTIVE = "non_finite_objective"  # the objective came out NaN or infinite
    # The backend gave up during execution (pipeline.workers.quantum maps its errors here).
    BACKEND_UNAVAILABLE = "backend_unavailable"
    BACKEND_TRANSIENT = "backend_transient"
    BACKEND_PERMANENT = "backend_permanent"
    BUDGET_EXHAUSTED = "budget_exhausted"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    BACKEND_ERROR = "backend_error"
    FALLBACK_REQUIRED = "fallback_required"


@dataclass(frozen=True)
class Fallback:
    """Why a problem's answer did not come from its planned route: a code and a sentence."""

    code: FallbackCode
    message: str

    def __str__(self) -> str:
        return self.message
