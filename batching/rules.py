"""Routing as lists of rules: why a problem or a batch does not take the quantum route.

Every rule is a small named function that looks at one record and returns a refusal (a
fallback code and a sentence) or None; a list is evaluated in order and the first refusal
stands, recorded with its code. ``PROBLEM_RULES`` decide per problem what is never
negotiable (the submitter's route, the device's size), before problems are grouped by
circuit shape; ``BATCH_RULES`` decide per batch on its quantum estimate (the backend's fit,
the deadline, the budgets and quotas). Adding a rule is adding one function to a list, and
its test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline.fallback import Fallback, FallbackCode


@dataclass(frozen=True)
class Refusal:
    """Why not quantum. ``code`` is None where nothing fell back: the submitter chose."""

    code: FallbackCode | None
    message: str

    def fallback(self) -> Fallback | None:
        return None if self.code is None else Fallback(self.code, self.message)


@dataclass(frozen=True)
class ProblemFacts:
    """What the problem rules look at."""

    requested: str  # the submitter's route: auto | quantum | classical
    backend_refuses: str | None  # the backend's own sentence for a size it cannot take


@dataclass(frozen=True)
class QuantumEstimate:
    """One batch on the quantum route, as the batch rules look at it."""

    size: int
    cost_usd: float
    queue_s: float
    compile_s: float
    execute_s: float
    backend_refuses: str | None  # the cost model's or the device's sentence (memory, size)
    slack_s: float | None  # seconds to the earliest deadline; None: no deadline
    tenants: Mapping[str, int]  # problems per tenant

    @property
    def latency_s(self) -> float:
        return self.queue_s + self.compile_s + self.execute_s


class Ledger(Protocol):
    """What is left to spend, as the budget rules read it."""

    @property
    def per_problem_usd(self) -> float: ...

    @property
    def run_left(self) -> float: ...

    @property
    def tenant_left(self) -> Mapping[str, float]: ...


ProblemRule = Callable[[ProblemFacts], Refusal | None]
BatchRule = Callable[[QuantumEstimate, Ledger], Refusal | None]


def submitter_chose_classical(facts: ProblemFacts) -> Refusal | None:
    if facts.requested == "classical":
        return Refusal(None, "classical route requested by the submitter")
    return None


def fits_the_device(facts: ProblemFacts) -> Refusal | None:
    """A problem larger than the backend takes; a fallback only for one that asked for
    quantum (an ``auto`` problem was never promised it)."""
    if facts.backend_refuses is None:
        return None
    code = FallbackCode.QUBIT_LIMIT if facts.requested == "quantum" else None
    return Refusal(code, facts.backend_refuses)


def fits_the_backend(estimate: QuantumEstimate, _: Ledger) -> Refusal | None:
    if estimate.backend_refuses is None:
        return None
    return Refusal(FallbackCode.BACKEND_UNFIT, estimate.backend_refuses)


def meets_the_deadline(estimate: QuantumEstimate, _: Ledger) -> Refusal | None:
    slack = estimate.slack_s
    if slack is None or estimate.latency_s <= slack:
        return None
    return Refusal(
        FallbackCode.ROUTE_DEADLINE,
        f"deadline: quantum needs ~{estimate.latency_s:.1f}s (queue {estimate.queue_s:.1f}, "
        f"compile {estimate.compile_s:.1f}, execute {estimate.execute_s:.1f}) but the "
        f"earliest deadline is in {slack:.1f}s",
    )


def within_the_problem_budget(estimate: QuantumEstimate, ledger: Ledger) -> Refusal | None:
    per_problem = estimate.cost_usd / estimate.size
    if per_problem <= ledger.per_problem_usd:
        return None
    return Refusal(
        FallbackCode.ROUTE_BUDGET,
        f"budget: quantum costs ~{per_problem:.6f} USD per problem, over the per-problem "
        f"budget of {ledger.per_problem_usd:.6f} USD",
    )


def within_the_run_budget(estimate: QuantumEstimate, ledger: Ledger) -> Refusal | None:
    if estimate.cost_usd <= ledger.run_left:
        return None
    return Refusal(
        FallbackCode.ROUTE_BUDGET,
        f"budget: quantum costs ~{estimate.cost_usd:.6f} USD, {ledger.run_left:.6f} USD left "
        "of the run budget",
    )


def within_the_tenant_quotas(estimate: QuantumEstimate, ledger: Ledger) -> Refusal | None:
    for tenant, count in sorted(estimate.tenants.items()):
        share = estimate.cost_usd * count / estimate.size
        left = ledger.tenant_left.get(tenant)
        if left is not None and share > left:
            return Refusal(
                FallbackCode.ROUTE_QUOTA,
                f"quota: tenant {tenant!r} would spend ~{share:.6f} USD, {left:.6f} USD left "
                "of its quota",
            )
    return None


PROBLEM_RULES: tuple[ProblemRule, ...] = (submitter_chose_classical, fits_the_device)
BATCH_RULES: tuple[BatchRule, ...] = (
    fits_the_backend,
    meets_the_deadline,
    within_the_problem_budget,
    within_the_run_budget,
    within_the_tenant_quotas,
)


def problem_refusal(
    facts: ProblemFacts, rules: Sequence[ProblemRule] = PROBLEM_RULES
) -> Refusal | None:
    """The first problem rule that refuses quantum, or None."""
    return next((r for rule in rules if (r := rule(facts)) is not None), None)


def batch_refusal(
    estimate: QuantumEstimate, ledger: Ledger, rules: Sequence[BatchRule] = BATCH_RULES
) -> Refusal | None:
    """The first batch rule that refuses quantum, or None."""
    return next((r for rule in rules if (r := rule(estimate, ledger)) is not None), None)
