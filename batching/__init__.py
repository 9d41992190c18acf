"""Grouping of planned problems into batches, and routing: rule and economics."""

from batching.batches import Batch, PlannedProblem, RoutingNumbers
from batching.economics import route_batches
from batching.estimate import RunEstimate, estimate_run
from batching.planner import new_batch_id, plan_batches
from batching.routing import RouteDecision, route_problem

__all__ = [
    "Batch",
    "PlannedProblem",
    "RouteDecision",
    "RoutingNumbers",
    "RunEstimate",
    "estimate_run",
    "new_batch_id",
    "plan_batches",
    "route_batches",
    "route_problem",
]
