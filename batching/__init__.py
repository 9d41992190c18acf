"""Planning and routing: problems grouped into batches by circuit shape (``planner``), cut
for the workers (``sizing``), routed by an ordered list of rules (``rules``) on the numbers
of ``economics``, and the run's estimate said before it computes (``estimate``)."""

from batching.batches import (
    Batch,
    FinishedBatch,
    PlannedBatch,
    PlannedProblem,
    RoutingNumbers,
    TemplateUse,
)
from batching.economics import Budgets, route_batches
from batching.estimate import RunEstimate, estimate_run
from batching.planner import new_batch_id, plan_batches, plan_claims

__all__ = [
    "Batch",
    "Budgets",
    "FinishedBatch",
    "PlannedBatch",
    "PlannedProblem",
    "RoutingNumbers",
    "RunEstimate",
    "TemplateUse",
    "estimate_run",
    "new_batch_id",
    "plan_batches",
    "plan_claims",
    "route_batches",
]
