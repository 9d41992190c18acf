"""How the exceptions a route may raise become answers: each with the status and JSON body
that say why, never a 500 for bad input."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from flows.api.errors import ApiError
from flows.api.service import conflict
from pipeline.errors import KeyConflict


async def api_error(_: Request, exc: ApiError) -> JSONResponse:
    """A refusal decided anywhere in the request: its own status, body and headers."""
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


async def key_conflict(request: Request, exc: KeyConflict) -> JSONResponse:
    """409 naming the keys, as the caller's tenant knows them."""
    answer = conflict(getattr(request.state, "tenant", ""), exc)
    return JSONResponse(answer.body, status_code=answer.status)


async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """422 in the shape of every other validation error: record, field, message."""
    errors = [
        {
            "record": str(e["loc"][0]) if e.get("loc") else "request",
            "field": ".".join(str(p) for p in e.get("loc", ())[1:]),
            "message": str(e.get("msg", "invalid")),
        }
        for e in exc.errors()
    ]
    return JSONResponse({"errors": errors}, status_code=422)


def add_error_handlers(app: FastAPI) -> None:
    app.exception_handler(ApiError)(api_error)
    app.exception_handler(KeyConflict)(key_conflict)
    app.exception_handler(RequestValidationError)(bad_request)
