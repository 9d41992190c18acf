"""Request bodies within limits, enforced on the raw bytes as they are read.

A body is read only by a route that has checked the caller's token and rate first, so a
stranger's body is never read at all. What is read is bounded three ways: each body by
``max_body_bytes`` (413, declared or chunked), all bodies held at once by
``max_body_bytes_in_flight`` (503: the memory every reader together may hold), and time:
the whole body must arrive within ``body_timeout_s`` of the request (408), so a slow sender
holds its bytes and its place for a bounded time only.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from flows.api.errors import ApiError, error
from pipeline.config import ApiSettings

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


class BodyBudget:
    """The bytes of request bodies all requests together may hold (the global limit)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0  # touched on the event loop's thread only

    def take(self, size: int) -> None:
        """Hold ``size`` more bytes, or refuse (503) when that would go over the total."""
        if self.held + size > self.total:
            raise error(
                503,
                "the service holds as many request bodies as it may now "
                "(api.max_body_bytes_in_flight); retry shortly",
                **{"Retry-After": "1"},
            )
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size


class BodyReader:
    """One request's ``receive``, within the limits: what a route reads its body through."""

    def __init__(
        self,
        receive: Receive,
        headers: dict[str, str],
        api: ApiSettings,
        budget: BodyBudget,
        arrived: float,
    ) -> None:
        self._receive = receive
        self._declared = headers.get("content-length")
        self._api = api
        self._budget = budget
        self._deadline = arrived + api.body_timeout_s
        self._held = 0
        self._read = 0
        self.complete = self._declared in (None, "0") and "transfer-encoding" not in headers

    async def receive(self) -> Message:
        if self.complete:  # nothing (more) to read: the server's own disconnect message
            return await self._receive()
        if not self._held:
            self._hold()
        try:
            with anyio.fail_after(max(0.0, self._deadline - time.monotonic())):
                message = await self._receive()
        except TimeoutError:
            seconds = self._api.body_timeout_s
            raise error(
                408, f"the request body did not arrive within {seconds:g} s (api.body_timeout_s)"
            ) from None
        self._read += len(message.get("body", b""))
        if self._read > self._api.max_body_bytes:
            raise _too_large(self._api.max_body_bytes)
        self.complete = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    def _hold(self) -> None:
        """Check the declared length and hold its bytes (a chunked body: the most it may be)."""
        limit = self._api.max_body_bytes
        if self._declared is not None and not self._declared.strip().isdigit():
            raise error(400, "Content-Length is not a number")
        size = limit if self._declared is None else int(self._declared)
        if size > limit:
            raise _too_large(limit)
        self._budget.take(size)
        self._held = size

    def release(self) -> None:
        """Give the held bytes back: the request is over."""
        self._budget.give(self._held)
        self._held = 0


def _too_large(limit: int) -> ApiError:
    message = f"the request body is over the limit of {limit} bytes (api.max_body_bytes)"
    return error(413, message)
