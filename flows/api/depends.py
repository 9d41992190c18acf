"""What a route asks for before it runs, as FastAPI dependencies, in the order they are
checked: the caller's token and rate, then its body; for a solve, its budget and place in
the solve lane, then its body. A body is read only once the caller is let in, so a refused
caller costs no read, and always through the gate's limits (:mod:`flows.api.bodies`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from flows.api.auth import retry_after
from flows.api.errors import ApiError, error, invalid
from flows.api.service import parse_problems
from flows.api.solve import Budget
from flows.api.state import state_of
from pipeline.model import ProblemSpec

JSON_LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")


async def tenant_of(request: Request) -> str:
    """The caller's tenant (401 without a valid token), within its rate (429 over it)."""
    state = state_of(request)
    tenant = state.tenants.identify(request.headers.get("authorization"))
    if tenant is None:
        raise ApiError(
            401, {"error": "a valid bearer token is required"}, {"WWW-Authenticate": "Bearer"}
        )
    request.state.tenant = tenant
    wait = state.limiter.take(tenant)
    if wait > 0:
        raise error(429, "over the tenant's request rate", **{"Retry-After": retry_after(wait)})
    return tenant


Tenant = Annotated[str, Depends(tenant_of)]


async def raw_body(request: Request, _: Tenant) -> bytes:
    """The body, read (within the gate's limits) only once the caller is let in."""
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]


async def solve_budget(
    request: Request,
    _: Tenant,
    timeout_s: Annotated[
        float, Query(gt=0, description="The time budget in seconds (api.max_solve_timeout_s)")
    ] = 10.0,
) -> AsyncIterator[Budget]:
    """The solve's budget, from its request's arrival, and its place in the solve lane for
    the request's life (429 when there is none)."""
    longest = state_of(request).settings.api.max_solve_timeout_s
    if not timeout_s <= longest:  # a setting, so not in the schema; NaN fails too
        raise invalid("query", "timeout_s", f"must be more than 0 and at most {longest:g}")
    budget = Budget.from_start(timeout_s, request.state.arrived)
    with state_of(request).service.lane.admit(budget.deadline):
        yield budget


SolveBudget = Annotated[Budget, Depends(solve_budget)]


async def solve_body(request: Request, _: SolveBudget) -> bytes:
    """A solve's body, read once it has its place in the lane."""
    return await request.body()


SolveBody = Annotated[bytes, Depends(solve_body)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def problems_in(request: Request, body: bytes) -> list[ProblemSpec]:
    """The body's problems, JSON Lines when its content type says so."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return parse_problems(body, state_of(request).deps, content_type in JSON_LINES_TYPES)
