"""``/v1/solve``'s own lane, so that solves never hold what the other routes need.

At most ``solve_workers`` solves run at once (one per warm worker process) and
``solve_queue`` more may wait for a worker; a solve beyond those is refused at once (429,
``Retry-After``: when the soonest admitted solve's budget ends, a place is free). Waiting for
a worker happens on the event loop, never on a thread, and never past the solve's budget; the
threads a solve does use (validating and submitting its body, waiting for its worker's
answer) come from a limiter of the lane's own, not the default pool the other routes share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar, TypeVarTuple

import anyio
import anyio.to_thread

from flows.api.auth import retry_after
from flows.api.errors import error

T = TypeVar("T")
Args = TypeVarTuple("Args")


class SolveLane:
    """Places for solves (workers plus queue), the workers' slots, and the lane's threads."""

    def __init__(self, workers: int, queue: int) -> None:
        self._places = workers + queue
        self._deadlines: list[float] = []  # of the solves admitted; the event loop's alone
        self._workers = anyio.Semaphore(workers)
        self._threads = anyio.CapacityLimiter(workers + queue)

    @contextmanager
    def admit(self, deadline: float) -> Iterator[None]:
        """Hold a place until the solve is answered; 429 when every place is taken."""
        if len(self._deadlines) >= self._places:
            wait = min(self._deadlines) - time.monotonic()
            raise error(
                429,
                "every solve worker is busy and the queue is full "
                "(api.solve_workers, api.solve_queue); retry later",
                **{"Retry-After": retry_after(wait)},
            )
        self._deadlines.append(deadline)
        try:
            yield
        finally:
            self._deadlines.remove(deadline)

    async def call(self, fn: Callable[[*Args], T], *args: *Args) -> T:
        """``fn(*args)`` on one of the lane's threads."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._threads)

    async def take_worker(self, deadline: float) -> bool:
        """Take a worker's slot, waiting until ``deadline`` at most; whether one was free."""
        with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
            await self._workers.acquire()
            return True
        return False

    def give_worker(self) -> None:
        self._workers.release()
