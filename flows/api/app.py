"""The HTTP routes of ``qhopper api``: what each answers, on the state the service keeps for
its life. Every request passes the gate (:mod:`flows.api.gate`) first; a route reads its
body only after the caller's token and rate are checked, through the gate's limits.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from flows.api.auth import RateLimiter, Tenants, retry_after
from flows.api.bodies import BodyBudget
from flows.api.errors import ApiError, error, invalid
from flows.api.gate import Gate
from flows.api.lane import SolveLane
from flows.api.metrics import CONTENT_TYPE, Metrics
from flows.api.service import (
    MAX_PAGE,
    Service,
    check_idempotency_key,
    conflict,
    parse_problems,
    parse_since,
    scoped,
)
from flows.api.solve import Budget
from flows.api.tracing import TraceContext
from flows.api.workers import WorkerPool
from flows.deps import RunDeps, open_deps
from pipeline.config import Settings
from pipeline.errors import KeyConflict
from pipeline.intake.database import check_connection
from pipeline.model import SPEC_TYPES, ProblemSpec
from pipeline.results import query

log = logging.getLogger("qhopper.api")
JSON_LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")


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


@dataclass
class ApiState:
    """What the routes share for the life of the service."""

    settings: Settings
    deps: RunDeps
    service: Service
    tenants: Tenants
    limiter: RateLimiter
    metrics: Metrics
    bodies: BodyBudget


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.qh
    return state


async def tenant_of(request: Request) -> str:
    """The caller's tenant (401 without a valid token), within its rate (429 over it)."""
    state = _state(request)
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
    longest = _state(request).settings.api.max_solve_timeout_s
    if not timeout_s <= longest:  # a setting, so not in the schema; NaN fails too
        raise invalid("query", "timeout_s", f"must be more than 0 and at most {longest:g}")
    budget = Budget.from_start(timeout_s, request.state.arrived)
    with _state(request).service.lane.admit(budget.deadline):
        yield budget


SolveBudget = Annotated[Budget, Depends(solve_budget)]


async def solve_body(request: Request, _: SolveBudget) -> bytes:
    """A solve's body, read once it has its place in the lane."""
    return await request.body()


SolveBody = Annotated[bytes, Depends(solve_body)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def _problems(request: Request, body: bytes) -> list[ProblemSpec]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return parse_problems(body, _state(request).deps, content_type in JSON_LINES_TYPES)


def create_app(settings: Settings) -> FastAPI:
    """The service for ``settings``: run dependencies opened once and kept warm."""
    tenants = Tenants(settings.api.tenants)  # a bad [api.tenants] fails here, before serving

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        api = settings.api
        with open_deps(settings) as deps:
            workers = WorkerPool(settings, deps.backend_spec, api.solve_workers)
            try:
                app.state.qh = ApiState(
                    settings=settings,
                    deps=deps,
                    service=Service(deps, SolveLane(api.solve_workers, api.solve_queue), workers),
                    tenants=tenants,
                    limiter=RateLimiter.from_settings(api),
                    metrics=Metrics(deps, workers.take_summaries, workers.states),
                    bodies=BodyBudget(api.max_body_bytes_in_flight),
                )
                if not tenants:
                    log.warning("no [api.tenants] configured: every /v1 request will be refused")
                if api.warm_up:
                    await anyio.to_thread.run_sync(_warm_reads, deps)
                yield
            finally:
                workers.close()

    app = FastAPI(
        title="qhopper",
        version="1",
        summary="Submit optimisation problems, solve small ones synchronously, read results.",
        lifespan=lifespan,
        docs_url="/docs" if settings.api.docs else None,
        redoc_url="/redoc" if settings.api.docs else None,
    )
    app.add_middleware(Gate)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(KeyConflict)
    async def _key_conflict(request: Request, exc: KeyConflict) -> JSONResponse:
        answer = conflict(getattr(request.state, "tenant", ""), exc)
        return JSONResponse(answer.body, status_code=answer.status)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "record": str(e["loc"][0]) if e.get("loc") else "request",
                "field": ".".join(str(p) for p in e.get("loc", ())[1:]),
                "message": str(e.get("msg", "invalid")),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"errors": errors}, status_code=422)

    @app.post("/v1/problems", status_code=202, openapi_extra=PROBLEMS_BODY)
    def submit(
        request: Request, tenant: Tenant, body: RawBody, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        """Enqueue problems (all or none); the same key again answers with the first id."""
        specs = _problems(request, body)
        key = check_idempotency_key(idempotency_key)
        if key is not None and len(specs) != 1:
            raise invalid("header", "Idempotency-Key", "names the key of a single problem")
        trace: TraceContext = request.state.trace
        owned = [scoped(spec, tenant, key) for spec in specs]
        found = _state(request).service.submit(tenant, owned, trace.trace_id)
        return JSONResponse({"problems": found}, status_code=202)

    @app.get("/v1/problems/{problem_id}")
    def problem(request: Request, tenant: Tenant, problem_id: str) -> dict[str, Any]:
        """A problem's state, history and (once answered) its result row."""
        return _state(request).service.problem(tenant, problem_id)

    @app.post("/v1/problems/{problem_id}/requeue", status_code=202)
    def requeue(request: Request, tenant: Tenant, problem_id: str) -> dict[str, Any]:
        """Put one of the tenant's failed problems back in the queue with a fresh attempt
        budget (recorded in its history); its next answer replaces the failed one."""
        return _state(request).service.requeue(tenant, problem_id)

    @app.post("/v1/solve", openapi_extra=PROBLEMS_BODY)
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
        service = _state(request).service
        specs = await service.lane.call(_problems, request, body)
        if len(specs) != 1:
            raise invalid("body", "", "takes exactly one problem; submit more with /v1/problems")
        spec = scoped(specs[0], tenant, check_idempotency_key(idempotency_key))
        trace: TraceContext = request.state.trace
        answer = await service.solve(tenant, spec, budget, trace.trace_id)
        return JSONResponse(answer.as_json(), status_code=200 if answer.result else 202)

    @app.get("/v1/results")
    def results(
        request: Request,
        tenant: Tenant,
        since: Annotated[
            str | None, Query(description="ISO-8601; rows completed at or after")
        ] = None,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> dict[str, Any]:
        """The tenant's result rows, oldest first, a page at a time (cursor pagination)."""
        return _state(request).service.results(tenant, parse_since(since), cursor, limit)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        """The process answers."""
        return {"ok": True}

    @app.get("/readyz")
    def readyz(request: Request) -> JSONResponse:
        """Ready: the solve workers warm (with ``[api] warm_up``) and the intake answers."""
        state = _state(request)
        if state.settings.api.warm_up and not state.service.workers.warm.is_set():
            return JSONResponse({"ready": False}, status_code=503)
        try:
            check_connection(state.deps.intake.engine)
        except Exception as exc:  # the cause names the database: for the log, not the caller
            log.warning("not ready: %s: %s", type(exc).__name__, exc)
            return JSONResponse({"ready": False}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        """Prometheus text format; every name starts with ``qhopper_``."""
        return Response(_state(request).metrics.render(), media_type=CONTENT_TYPE)

    return app


def _warm_reads(deps: RunDeps) -> None:
    """Load what reading results takes here (DuckDB, Arrow) before serving, so the first
    caller's read costs what every later one does; the workers warm up the solving."""
    import pyarrow.compute  # noqa: F401  (result rows are filtered with it)

    query(deps.settings.results_location, "SELECT count(*) FROM problems")
