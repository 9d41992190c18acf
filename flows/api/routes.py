"""The HTTP routes of ``qhopper api``: what each answers, on the state the service keeps for
its life (:mod:`flows.api.state`). Every request passes the gate (:mod:`flows.api.gate`)
first; what a route asks for (tenant, body, solve budget) is checked in
:mod:`flows.api.depends` before it runs.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from flows.api.depends import (
    IdempotencyKey,
    RawBody,
    SolveBody,
    SolveBudget,
    Tenant,
    problems_in,
)
from flows.api.errors import invalid
from flows.api.metrics import CONTENT_TYPE
from flows.api.service import MAX_PAGE, check_idempotency_key, parse_since, scoped
from flows.api.state import state_of
from flows.api.tracing import TraceContext
from pipeline.intake.database import check_connection
from pipeline.model import SPEC_TYPES

log = logging.getLogger("qhopper.api")
router = APIRouter()


def _problems_body() -> dict[str, Any]:
    """The OpenAPI request body of the routes that take problems: each kind's spec as its
    JSON schema (every optional field included), one object or an array of them."""
    problem = {"anyOf": [spec_type.model_json_schema() for spec_type in SPEC_TYPES.values()]}
    return {
        "requestBody": {
            "required": True,
            "description": "One problem object or an array of them, exactly as in input files "
            "(application/x-ndjson: JSON Lines).",
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [problem, {"type": "array", "items": problem, "minItems": 1}]
                    }
                }
            },
        }
    }


PROBLEMS_BODY = _problems_body()


@router.post("/v1/problems", status_code=202, openapi_extra=PROBLEMS_BODY)
def submit(
    request: Request, tenant: Tenant, body: RawBody, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Enqueue problems (all or none); the same key again answers with the first id."""
    specs = problems_in(request, body)
    key = check_idempotency_key(idempotency_key)
    if key is not None and len(specs) != 1:
        raise invalid("header", "Idempotency-Key", "names the key of a single problem")
    trace: TraceContext = request.state.trace
    owned = [scoped(spec, tenant, key) for spec in specs]
    found = state_of(request).service.submit(tenant, owned, trace.trace_id)
    return JSONResponse({"problems": found}, status_code=202)


@router.get("/v1/problems/{problem_id}")
def problem(request: Request, tenant: Tenant, problem_id: str) -> dict[str, Any]:
    """A problem's state, history and (once answered) its result row."""
    return state_of(request).service.problem(tenant, problem_id)


@router.post("/v1/problems/{problem_id}/requeue", status_code=202)
def requeue(request: Request, tenant: Tenant, problem_id: str) -> dict[str, Any]:
    """Put one of the tenant's failed problems back in the queue with a fresh attempt
    budget (recorded in its history); its next answer replaces the failed one."""
    return state_of(request).service.requeue(tenant, problem_id)


@router.post("/v1/solve", openapi_extra=PROBLEMS_BODY)
async def solve(
    request: Request,
    tenant: Tenant,
    budget: SolveBudget,
    body: SolveBody,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """One problem answered within ``timeout_s`` of the request's arrival (200),
    labelled; or its state and why not (202: it stays queued and the interval flow
    answers it). Runs in the solve lane: 429 when every worker and queue place is taken."""
    service = state_of(request).service
    specs = await service.lane.call(problems_in, request, body)
    if len(specs) != 1:
        raise invalid("body", "", "takes exactly one problem; submit more with /v1/problems")
    spec = scoped(specs[0], tenant, check_idempotency_key(idempotency_key))
    trace: TraceContext = request.state.trace
    answer = await service.solve(tenant, spec, budget, trace.trace_id)
    return JSONResponse(answer.as_json(), status_code=200 if answer.result else 202)


@router.get("/v1/results")
def results(
    request: Request,
    tenant: Tenant,
    since: Annotated[str | None, Query(description="ISO-8601; rows completed at or after")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> dict[str, Any]:
    """The tenant's result rows, oldest first, a page at a time (cursor pagination)."""
    return state_of(request).service.results(tenant, parse_since(since), cursor, limit)


@router.get("/healthz")
async def healthz() -> dict[str, bool]:
    """The process answers."""
    return {"ok": True}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready: the solve workers warm (with ``[api] warm_up``) and the intake answers."""
    state = state_of(request)
    if state.settings.api.warm_up and not state.service.workers.warm.is_set():
        return JSONResponse({"ready": False}, status_code=503)
    try:
        check_connection(state.deps.intake.engine)
    except Exception as exc:  # the cause names the database: for the log, not the caller
        log.warning("not ready: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"ready": False}, status_code=503)
    return JSONResponse({"ready": True})


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus text format; every name starts with ``qhopper_``."""
    return Response(state_of(request).metrics.render(), media_type=CONTENT_TYPE)
