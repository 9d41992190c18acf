"""The gate every request passes first: trace context, arrival time, the limits on its body,
the in-flight count, and one log line and metric with the status the caller actually got.

Why a pure ASGI gate rather than a route check: the body limits must hold on the raw bytes
before anything parses them, chunked bodies included, and the rest belongs to every route
alike. It sits inside Starlette's outermost error middleware, so it answers an unexpected
exception's 500 itself: that way the 500 is what it logs and counts. It logs the route,
status, tenant and trace id: never a token, a hash or a payload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from enum import IntEnum
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from flows.api.bodies import BodyReader, Receive
from flows.api.state import ApiState
from flows.api.tracing import TraceContext, trace_from

log = logging.getLogger("qhopper.api")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class Status(IntEnum):
    """Statuses the gate records besides what the routes answer."""

    NONE = 0  # nothing was sent (yet)
    SERVER_ERROR = 500
    CLIENT_CLOSED = 499  # the caller went away before an answer (nginx's code for it)


class _Answer:
    """The response as it goes out: its status noted, our ``traceparent`` added, and the
    connection closed when the answer goes out before the whole body was read."""

    def __init__(self, send: Send, trace: TraceContext, body: BodyReader) -> None:
        self._send = send
        self._trace = trace
        self._body = body
        self.status = int(Status.NONE)

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            extra = [(b"traceparent", self._trace.header().encode())]
            if not self._body.complete:
                extra.append((b"connection", b"close"))
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await self._send(message)

    async def server_error(self) -> None:
        """The 500 for an exception no route handled, unless an answer already started."""
        if self.status != Status.NONE:
            return
        body = {"error": "internal server error", "trace_id": self._trace.trace_id}
        await JSONResponse(body, status_code=Status.SERVER_ERROR)(
            {"type": "http"}, _none, self.send
        )


async def _none() -> Message:
    return {"type": "http.disconnect"}


class Gate:
    """See the module docstring; ``app.state.qh`` (the service's state) must be set."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: ApiState = scope["app"].state.qh
        arrived = time.monotonic()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        trace = trace_from(headers.get("traceparent"))
        scope.setdefault("state", {}).update(trace=trace, arrived=arrived)
        body = BodyReader(receive, headers, state.settings.api, state.bodies, arrived)
        answer = _Answer(send, trace, body)
        state.metrics.in_flight.inc()
        try:
            await self.app(scope, body.receive, answer.send)
        except ClientDisconnect:
            answer.status = Status.CLIENT_CLOSED
        except Exception as exc:
            await answer.server_error()
            log.error("unhandled %s trace=%s", type(exc).__name__, trace.trace_id)
            raise  # the server logs the traceback
        finally:
            body.release()
            state.metrics.in_flight.dec()
            _record(state, scope, trace, answer.status, time.monotonic() - arrived)


def _record(
    state: ApiState, scope: Scope, trace: TraceContext, status: int, seconds: float
) -> None:
    route = scope.get("route")
    path = getattr(route, "path", None) or "unmatched"
    method = scope.get("method", "")
    state.metrics.requests.labels(method, path, str(status)).inc()
    state.metrics.latency.labels(method, path).observe(seconds)
    tenant = scope.get("state", {}).get("tenant", "-")
    log.info(
        "%s %s -> %d in %.1f ms tenant=%s trace=%s",
        method,
        path,
        status,
        seconds * 1000,
        tenant,
        trace.trace_id,
    )
