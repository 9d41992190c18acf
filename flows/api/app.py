"""The HTTP routes of ``qhopper api``: what each answers, on the state the service keeps for
its life. Every request passes the gate (:mod:`flows.api.gate`) first; a route reads its
body only after the caller's token and rate are checked, through the gate's limits.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from flows.api.auth import RateLimiter, Tenants, retry_after
from flows.api.bodies import BodyBudget
from flows.api.errors import ApiError, error, invalid
from flows.api.gate import Gate
from flows.api.metrics import CONTENT_TYPE, Metrics
from flows.api.service import (
    MAX_PAGE,
    Service,
    check_idempotency_key,
    parse_problems,
    parse_since,
    scoped,
)
from flows.api.solve import SyncSolver
from flows.api.tracing import TraceContext
from flows.deps import RunDeps, open_deps
from pipeline.config import Settings
from pipeline.intake.database import check_connection
from pipeline.model import ProblemSpec

log = logging.getLogger("qhopper.api")
JSON_LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")

PROBLEMS_BODY = {
    "requestBody": {
        "required": True,
        "description": "One problem object or an array of them, exactly as in input files "
        "(application/x-ndjson: JSON Lines).",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "object", "required": ["kind"]},
                        {"type": "array", "items": {"type": "object"}, "minItems": 1},
                    ]
                }
            }
        },
    }
}


@dataclass
class ApiState:
    """What the routes share for the life of the service."""

    settings: Settings
    deps: RunDeps
    service: Service
    tenants: Tenants
    limiter: RateLimiter
    metrics: Metrics
    ready: threading.Event
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
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def _problems(request: Request, body: bytes) -> list[ProblemSpec]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return parse_problems(body, _state(request).deps, content_type in JSON_LINES_TYPES)


def create_app(settings: Settings) -> FastAPI:
    """The service for ``settings``: run dependencies opened once and kept warm."""
    tenants = Tenants(settings.api.tenants)  # a bad [api.tenants] fails here, before serving

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with ExitStack() as stack:
            deps = stack.enter_context(open_deps(settings))
            solver = SyncSolver(deps, settings.api.solve_workers)
            ready = threading.Event()
            app.state.qh = ApiState(
                settings=settings,
                deps=deps,
                service=Service(deps, solver),
                tenants=tenants,
                limiter=RateLimiter.from_settings(settings.api),
                metrics=Metrics(deps, solver.take_summaries),
                ready=ready,
                bodies=BodyBudget(settings.api.max_body_bytes_in_flight),
            )
            if settings.api.warm_up:
                scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="qhopper-warm-"))
                _warm_up(settings, deps, Path(scratch), ready)
            else:
                ready.set()
            if not tenants:
                log.warning("no [api.tenants] configured: every /v1 request will be refused")
            yield

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

    @app.post("/v1/solve", openapi_extra=PROBLEMS_BODY)
    def solve(
        request: Request,
        tenant: Tenant,
        body: RawBody,
        idempotency_key: IdempotencyKey = None,
        timeout_s: Annotated[float, Query(description="The time budget in seconds")] = 10.0,
    ) -> JSONResponse:
        """One problem answered within ``timeout_s`` (200), labelled; or its state and why
        not (202: it stays queued and the interval flow answers it)."""
        state = _state(request)
        longest = state.settings.api.max_solve_timeout_s
        if not math.isfinite(timeout_s) or not 0 < timeout_s <= longest:
            raise invalid("query", "timeout_s", f"must be more than 0 and at most {longest:g}")
        specs = _problems(request, body)
        if len(specs) != 1:
            raise invalid("body", "", "takes exactly one problem; submit more with /v1/problems")
        spec = scoped(specs[0], tenant, check_idempotency_key(idempotency_key))
        trace: TraceContext = request.state.trace
        answer = state.service.solve(tenant, spec, timeout_s, trace.trace_id)
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
        """Ready: warmed up and the intake database answers."""
        state = _state(request)
        if not state.ready.is_set():
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


def _warm_up(settings: Settings, deps: RunDeps, scratch: Path, ready: threading.Event) -> None:
    """Import the engine and compile its kernels on throwaway problems in a scratch home,
    so the first caller's solve costs what every later one does. Never on a paid QPU.

    Before serving, not on a background thread beside the starting server: that way the
    first solve afterwards segfaulted in ``PackedTemplate.pack`` (pickling a qiskit
    circuit), every time, with this lock's qiskit; run before serving, it never did.
    """
    try:
        if deps.backend().solver_path == "qpu":
            return
        from pipeline.model import spec_from_record

        warm = settings.model_copy(
            update={
                "home": scratch,
                "intake": settings.intake.model_copy(update={"database_url": None}),
            }
        )
        with open_deps(warm, backend_spec=deps.backend_spec) as scratch_deps:
            solver = SyncSolver(scratch_deps)
            for n in (10, 12):
                edges = [[i, (i + 1) % n] for i in range(n)] + [[0, n // 2]]
                spec = spec_from_record({"kind": "maxcut", "n": n, "edges": edges})
                outcome = scratch_deps.intake.submit([(spec, "warm-up")])[0]
                solver.answers([outcome.id], [outcome.key], 30.0, time.monotonic())
    except Exception as exc:  # a failed warm-up costs the first caller time, nothing else
        log.warning("warm-up failed: %s: %s", type(exc).__name__, exc)
    finally:
        ready.set()
