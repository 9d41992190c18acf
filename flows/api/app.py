"""``qhopper api``'s application: the routes (:mod:`flows.api.routes`) behind the gate
(:mod:`flows.api.gate`), on state opened once at start-up and kept warm for the service's
life (:mod:`flows.api.state`). Wiring only: what a request gets is decided in those modules.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio.to_thread
from fastapi import FastAPI

from flows.api.auth import RateLimiter, Tenants
from flows.api.bodies import BodyBudget
from flows.api.gate import Gate
from flows.api.handlers import add_error_handlers
from flows.api.lane import SolveLane
from flows.api.metrics import Metrics
from flows.api.routes import router
from flows.api.service import Service
from flows.api.state import ApiState
from flows.api.workers import WorkerPool
from flows.deps import RunDeps, open_deps
from pipeline.config import Settings
from pipeline.results import query

log = logging.getLogger("qhopper.api")


def create_app(settings: Settings) -> FastAPI:
    """The service for ``settings``: run dependencies opened once and kept warm."""
    tenants = Tenants(settings.api.tenants)  # a bad [api.tenants] fails here, before serving
    app = FastAPI(
        title="qhopper",
        version="1",
        summary="Submit optimisation problems, solve small ones synchronously, read results.",
        lifespan=partial(_lifespan, settings, tenants),
        docs_url="/docs" if settings.api.docs else None,
        redoc_url="/redoc" if settings.api.docs else None,
    )
    app.add_middleware(Gate)
    add_error_handlers(app)
    app.include_router(router)
    return app


@asynccontextmanager
async def _lifespan(settings: Settings, tenants: Tenants, app: FastAPI) -> AsyncIterator[None]:
    """The service's life: run dependencies and solve workers open, the reads warm."""
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


def _warm_reads(deps: RunDeps) -> None:
    """Load what reading results takes here (DuckDB, Arrow) before serving, so the first
    caller's read costs what every later one does; the workers warm up the solving."""
    import pyarrow.compute  # noqa: F401  (result rows are filtered with it)

    query(deps.settings.results_location, "SELECT count(*) FROM problems")
