"""Grouping of planned problems into batches, and routing: rule and economics."""

from batching.economics import route_batches, run_work_seconds
from batching.planner import new_batch_id, plan_batches
from batching.records import Batch, PlannedProblem, RoutingNumbers
from batching.routing import RouteDecision, route_problem

__all__ = [
    "Batch",
    "PlannedProblem",
    "RouteDecision",
    "RoutingNumbers",
    "new_batch_id",
    "plan_batches",
    "route_batches",
    "route_problem",
    "run_work_seconds",
]
