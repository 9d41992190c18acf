"""What the service keeps for its life, shared by the gate and the routes.

Why a module of its own: the gate (every request) and the routes both read it, and the app
wires it; kept beside neither, no two of them import each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from flows.api.auth import RateLimiter, Tenants
from flows.api.bodies import BodyBudget
from flows.api.metrics import Metrics
from flows.api.service import Service
from flows.deps import RunDeps
from pipeline.config import Settings


@dataclass
class ApiState:
    """What the routes share for the life of the service (``app.state.qh``)."""

    settings: Settings
    deps: RunDeps
    service: Service
    tenants: Tenants
    limiter: RateLimiter
    metrics: Metrics
    bodies: BodyBudget


def state_of(request: Request) -> ApiState:
    """The service's state, as the app's lifespan set it."""
    state: ApiState = request.app.state.qh
    return state
