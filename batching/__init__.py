"""Circuit-shape keys, grouping of claimed problems into batches, and routing."""

from batching.economics import RoutingNumbers, route_batches
from batching.planner import Batch, PlannedProblem, plan_batches
from batching.routing import RouteDecision, route_problem
from pipeline.engine.shapes import ShapeKey, shape_of

__all__ = [
    "Batch",
    "PlannedProblem",
    "RouteDecision",
    "RoutingNumbers",
    "ShapeKey",
    "plan_batches",
    "route_batches",
    "route_problem",
    "shape_of",
]
